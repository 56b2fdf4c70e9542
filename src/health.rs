//! Health reporting (being built): every long-running task registers a reporter here.
