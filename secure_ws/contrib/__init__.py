"""Optional sub-apps built on the core; the core never imports from here."""
