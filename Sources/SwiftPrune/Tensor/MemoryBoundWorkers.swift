/// Worker counts of the memory-bound kernels of issue 18 (structured slice
/// norms and masks, dequantization), measured rather than guessed.
///
/// Rule: a second worker is used where, on a quiet machine, it shortened the
/// call's wall time by at least 20% (1.25x: its extra CPU time buys
/// something) in the median of the runs; below that the call stays on one
/// thread. Data: `chrt -f 10 python benchmarks/memory_threads.py
/// --near-thresholds` (real-time priority keeps the other sessions off the two
/// cores: a stand-in for a quiet machine), 1 → 2 threads, q1 wall speed-up,
/// range over seven runs (median; CPU cost range):
///
/// | call | largest on one thread | smallest on two |
/// |---|---|---|
/// | structured L2, float32 weights | 10 MiB: axis 0 1.16–1.44x (1.27x), axis 1 1.04–1.33x (1.11x; 1.14–1.48x CPU) | 15 MiB: axis 0 1.26–1.67x (1.42x), axis 1 1.14–1.58x (1.32x) |
/// | dequantize int8 → float32 | 8 MiB out: 0.98–1.83x (1.37x; 1.09–1.81x CPU) in runs that scattered, 0.98–1.37x (1.15x) in the last four | 12 MiB out: 1.38–2.42x (1.68x; 1.01–1.38x CPU) |
///
/// (5 MiB of weights or 4 MiB of output gained 0.97–1.29x for 1.16–1.35x the
/// CPU.) Large calls keep two workers: memory bandwidth scales with the cores
/// on this VM (42 MB structured 1.39–1.48x, 134 MB 1.47–1.64x, 400 MB
/// dequantize 1.87x, at 1.0–1.2x the CPU time). The CSR matvec's rule
/// (``CSRMatrix``'s `matvecDriver`) was measured the same way and kept.
enum MemoryBoundWorkers {
    /// Weight bytes from which structured slice norms and masks use more than one worker.
    static let structuredBytes = 12 << 20
    /// Output elements from which a dequantization uses more than one worker (12 MiB of float32).
    static let dequantizeElements = 3 << 20

    /// `Threading.workerCount(for: work, minimumPerWorker:)`, or 1 when `size` is under `threshold`.
    static func count(size: Int, threshold: Int, work: Int, minimumPerWorker: Int) -> Int {
        size < threshold ? 1 : Threading.workerCount(for: work, minimumPerWorker: minimumPerWorker)
    }
}
