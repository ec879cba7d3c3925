"""Operations helpers shared by the lab, the tests and the benchmarks."""
