"""optional operators."""
