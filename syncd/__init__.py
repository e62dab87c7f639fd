"""syncd: mints OAuth 2.0 client-credentials tokens ahead of expiry and writes them into secret stores."""

__version__ = "0.1.0"
