"""Test doubles for libraries that need hardware this machine may not have."""
