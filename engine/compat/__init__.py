"""The seed library's (pyautogen 0.1.x) API: the Completion facade and what only it needs."""
