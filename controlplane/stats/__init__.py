"""Django-free statistics: trends, change points, distribution tests, leak math, canary tests."""
