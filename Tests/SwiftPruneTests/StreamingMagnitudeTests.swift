import XCTest
@testable import SwiftPrune

/// The streaming building blocks against a direct count and against the
/// in-memory global masks: a threshold found from merged histograms must give
/// the same masks, bit for bit, as globalMagnitudeMasks over the concatenation.
final class StreamingMagnitudeTests: XCTestCase {
    func histogram(_ w: [Float], low: UInt32, shift: Int, bins: Int) throws -> ([Int64], UInt32, Int) {
        var counts = [Int64](repeating: -1, count: bins)
        let (bits, bad) = try w.withUnsafeBufferPointer { values in
            try counts.withUnsafeMutableBufferPointer { try magnitudeHistogram(values, low: low, shift: shift, bins: bins, into: $0) }
        }
        return (counts, bits, bad)
    }

    func testHistogramCountsEveryKeyInRangeAndFlagsNonFinite() throws {
        var random = TestRandom(seed: 7)
        let values: [Float] = (0 ..< 200_003).map { _ in random.float(in: -3 ... 3) } + [.infinity, -.nan, 0, -0.0]
        let (counts, bits, bad) = try histogram(values, low: 0, shift: 15, bins: 1 << 16)
        var expected = [Int64](repeating: 0, count: 1 << 16)
        var expectedBits: UInt32 = 0
        for v in values { expected[Int(v.magnitudeKey >> 15)] += 1; expectedBits |= v.magnitudeKey & 0x7FFF }
        XCTAssertEqual(counts, expected)
        XCTAssertEqual(bits, expectedBits)
        XCTAssertEqual(bad, 2)
        // A fine histogram restricted to one coarse bin.
        let bin = UInt32(values[5].magnitudeKey >> 15)
        let (fine, _, _) = try histogram(values, low: bin << 15, shift: 0, bins: 1 << 15)
        XCTAssertEqual(fine.reduce(0, +), expected[Int(bin)])
        XCTAssertGreaterThan(fine[Int(values[5].magnitudeKey & 0x7FFF)], 0)
    }

    func testThresholdMasksFromMergedHistogramsEqualGlobalMasks() throws {
        var random = TestRandom(seed: 11)
        let tensors: [[Float]] = [300_000, 0, 5, 70_000].map { n in
            (0 ..< n).map { _ in Float(Int(random.next() % 64)) * 0.125 * (random.next() % 2 == 0 ? 1 : -1) }
        }
        for sparsity in [0.1, 0.5, 0.77] {
            let total = tensors.reduce(0) { $0 + $1.count }
            let k = try prunedCount(sparsity: sparsity, of: total)
            // Two levels, as the coordinator does: the top 16 key bits, then the low 15 inside the chosen bin.
            var merged = [Int64](repeating: 0, count: 1 << 16)
            for t in tensors { let (c, _, _) = try histogram(t, low: 0, shift: 15, bins: 1 << 16); for i in 0 ..< c.count { merged[i] += c[i] } }
            var below: Int64 = 0, bin = 0
            while below + merged[bin] < Int64(k) { below += merged[bin]; bin += 1 }
            var fine = [Int64](repeating: 0, count: 1 << 15)
            var perTensor: [[Int64]] = []
            for t in tensors {
                let (c, _, _) = try histogram(t, low: UInt32(bin) << 15, shift: 0, bins: 1 << 15)
                perTensor.append(c)
                for i in 0 ..< c.count { fine[i] += c[i] }
            }
            let need = Int64(k) - below
            var below2: Int64 = 0, digit = 0
            while below2 + fine[digit] < need { below2 += fine[digit]; digit += 1 }
            let threshold = (UInt32(bin) << 15) + UInt32(digit)
            var ties = Int(need - below2)
            var masks: [[Bool]] = []
            for (t, counts) in zip(tensors, perTensor) {
                let mine = min(ties, Int(counts[digit]))
                ties -= mine
                var mask = [Bool](repeating: false, count: t.count)
                try t.withUnsafeBufferPointer { values in
                    try mask.withUnsafeMutableBufferPointer {
                        try writeMagnitudeThresholdMask(values, threshold: threshold, prunedTies: mine, into: $0)
                    }
                }
                masks.append(mask)
            }
            let reference = try globalMagnitudeMasks(tensors.map { try Tensor(shape: [$0.count], scalars: $0) }, sparsity: sparsity)
            for (mask, ref) in zip(masks, reference) { XCTAssertEqual(mask, ref.scalars) }
        }
    }

    func testBadArgumentsThrow() {
        XCTAssertThrowsError(try histogram([1], low: 0, shift: 32, bins: 1))
        XCTAssertThrowsError(try histogram([1], low: 0x7FFF_FFFF, shift: 0, bins: 2))
        XCTAssertThrowsError(try histogram([1], low: 0, shift: 0, bins: 0))
        var mask = [Bool](repeating: true, count: 2)
        XCTAssertThrowsError(try [Float.nan, 1].withUnsafeBufferPointer { v in
            try mask.withUnsafeMutableBufferPointer { try writeMagnitudeThresholdMask(v, threshold: 0, prunedTies: 0, into: $0) }
        })
    }
}
