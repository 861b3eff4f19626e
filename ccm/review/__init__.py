"""Designer review: lint, live preview, signed proofs and the approval gate."""
