"""fsbill: a real-time prepaid enforcer for FreeSWITCH."""

__version__ = "0.1.0"
