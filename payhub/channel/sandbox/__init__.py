"""The sandbox channel: a simulated bank with deterministic magic values, for tests and demos.

See payhub.channel.sandbox.scenarios for the magic values.
"""
