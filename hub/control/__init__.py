"""The hub's control plane: client change notices and socket presence."""
