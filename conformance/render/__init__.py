"""The report writers: HTML, Markdown, JUnit XML and the terminal summary, over one shared readiness grid.

Each writer module has `render(report)` (the terminal has `print_summary`); the JSON form is `Report.to_json()`.
"""
