"""Python helpers shared by the tests and the failover harness."""
