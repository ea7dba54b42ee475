"""End to end in a real Chromium (Playwright): the page as a user sees it."""
