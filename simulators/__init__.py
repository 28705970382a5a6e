"""Simulated vehicles and fleets that publish through the real wire format."""
