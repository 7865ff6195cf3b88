"""Dashboard pages, server rendered. Each page calls the same service functions as the REST API."""
