"""A local Microsoft Graph v1.0 stand-in for development, tests, the demo and benchmarks.

Stdlib only. See docs/simulator.md for the contract, the admin API and the demo tenant.
"""
