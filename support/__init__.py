"""What tests, drills and benchmarks share: real gateway processes, throwaway database and broker servers, measuring a process."""
