"""Tables, figures and the Markdown report of a reproduction."""
