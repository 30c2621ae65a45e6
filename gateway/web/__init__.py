"""The web portal (/portal, tenant admins) and console (/console, provider ops): HTML pages."""
