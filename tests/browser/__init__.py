"""Browser tests: headless Chromium (Debian's) through Playwright against the real console."""
