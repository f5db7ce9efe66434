#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The three writers of magnitude keep-masks. They give identical masks (the
/// tests compare them); they differ in how many passes they make over the data
/// and in fixed costs, so which is fastest depends on the size.
enum MagnitudeMaskWriter: String, CaseIterable, Sendable {
    /// ``writeMagnitudeMasks(_:prune:into:)``: select, then compare (vectorized passes).
    case threePass = "three-pass"
    /// `writeMagnitudeMasksTwoPass`: a 16-bit histogram, then write and resolve one bucket.
    case twoPass = "two-pass"
    /// `writeMagnitudeMasksSampled`: a sample brackets the threshold, then one pass.
    case sampled

    /// The one place that decides which writer runs for `count` entries in
    /// `segments` tensors (one for per-tensor pruning, several for global).
    ///
    /// Measured on a 2-vCPU AMD EPYC (Zen 3) VM, one float32 Gaussian tensor at
    /// 50%, each writer forced in turn (`SWIFTPRUNE_MASK_WRITER`), CPU time per
    /// call at one thread: 2^20 entries: three-pass 1.34 ms, sampled 1.94,
    /// two-pass 1.66; 2^22: 6.17, 5.26, 6.28; 10^7: 14.6, 9.5 (14.9 two-pass);
    /// 10^8: sampled 90 ms (156 before its pass was vectorized and its sample
    /// read with independent loads). The one-pass sampled writer wins from
    /// 2^22 entries; below, its sample and bracket cost more than the third
    /// pass saves. An earlier run (benchmarks/mask_writers.py) ranked global
    /// pruning of 20 tensors like one tensor, so only the size decides.
    /// (These numbers are from round 7. The sampled writer has since become
    /// cheaper — 1e7 at ~8–9 ms CPU in round 9 — so the crossover may now lie
    /// below 2^22; not re-measured, the cut stays where it was measured.)
    static func chosen(count: Int, segments: Int) -> MagnitudeMaskWriter {
        if let forced = forced { return forced }
        return count >= 1 << 22 ? .sampled : .threePass
    }

    /// The writer named by `SWIFTPRUNE_MASK_WRITER`, read once; nil when unset or unknown.
    static let forced: MagnitudeMaskWriter? = {
        guard let raw = getenv("SWIFTPRUNE_MASK_WRITER") else { return nil }
        return MagnitudeMaskWriter(rawValue: String(cString: raw))
    }()

    /// Writes the masks with this writer.
    func write<S: MagnitudeOrdered>(_ data: SegmentedBuffer<S>, prune k: Int,
                                    into masks: [UnsafeMutableBufferPointer<Bool>]) throws {
        switch self {
        case .threePass: try writeMagnitudeMasks(data, prune: k, into: masks)
        case .twoPass: try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        case .sampled: try writeMagnitudeMasksSampled(data, prune: k, into: masks, minimumCount: 0)
        }
    }
}

/// The keep-masks of ``writeMagnitudeMasks(_:prune:into:)``, written by the
/// writer ``MagnitudeMaskWriter/chosen(count:segments:)`` picks for this size.
@_specialize(where S == Float)
@_specialize(where S == Double)
func writeMagnitudeMasksFastest<S: MagnitudeOrdered>(
    _ data: SegmentedBuffer<S>, prune k: Int, into masks: [UnsafeMutableBufferPointer<Bool>]
) throws {
    try MagnitudeMaskWriter.chosen(count: data.count, segments: data.segments.count).write(data, prune: k, into: masks)
}
