"""The reliability and safety matrix of issue 15: each case a test."""
