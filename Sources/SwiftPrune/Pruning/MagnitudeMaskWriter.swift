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
    /// From `benchmarks/mask_writers.py` (each writer forced in turn, rounds
    /// interleaved, medians of best-of-3; README, "Which mask writer runs"),
    /// CPU time per call for one tensor: the three-pass writer is fastest up
    /// to 2^23 entries at one and two threads (2^23: 11.1 ms against 12.0
    /// two-pass and 16.2 sampled at one thread; 13.6 against 15.5 and 15.2 at
    /// two); the one-pass sampled writer from 2^25 (two threads: 51.6 ms
    /// against 67.7 two-pass and 80.3 three-pass; one thread: a tie with
    /// two-pass, 48.9 against 46.7, and 84 against 101 at 2^26). Two-pass led
    /// only at one thread near 2^24 (21.3 ms against 22.9), not by enough to
    /// be worth a third range. 20 tensors (global pruning) ranked them alike
    /// within ±7%, so only the size decides. `SWIFTPRUNE_MASK_WRITER`
    /// (`three-pass`, `two-pass`, `sampled`) forces one, for such measurements.
    static func chosen(count: Int, segments: Int) -> MagnitudeMaskWriter {
        if let forced = forced { return forced }
        return count >= 1 << 25 ? .sampled : .threePass
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
