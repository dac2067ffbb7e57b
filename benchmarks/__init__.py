"""eventfold's benchmarks: the ``eventfold bench`` harness and the disk baselines it divides by.

Speed is measured here, never asserted in tests: every figure is printed next to a baseline
taken in the same run (the disk's plain write+fdatasync loop, orjson, and the eventsourcing
package), so that figures from different machines are read as ratios.
"""
