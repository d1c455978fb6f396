"""Bank cards over ISO 8583 (channel `bankcard`): adapter, wire layer, switch simulator."""
