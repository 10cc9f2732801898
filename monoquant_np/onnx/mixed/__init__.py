"""Mixed precision under a budget: candidate formats per weight, their sensitivity, the allocation (spec 21)."""
