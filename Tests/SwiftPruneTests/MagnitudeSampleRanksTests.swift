import Testing
@testable import SwiftPrune

/// The sampled writer's order statistics (histogram window, then selection)
/// against the sorted sample.
@Suite struct MagnitudeSampleRanksTests {
    /// Float magnitude keys: Gaussian-like spread, or few distinct values
    /// (many ties, one bucket holding most keys), or keys spanning the whole
    /// 63-bit range (a coarse histogram).
    static func sample(count: Int, kind: Int, seed: UInt64) -> [UInt64] {
        var generator = Xoshiro256StarStar(seed: seed)
        return (0 ..< count).map { _ in
            switch kind {
            case 0:
                let u = (Double(generator.next() >> 11) + 0.5) / 9_007_199_254_740_992
                return UInt64(Float(u * u * 3).magnitudeKey)
            case 1: return UInt64(generator.uniform(below: 5)) * 1000
            default: return generator.next() >> 1
            }
        }
    }

    @Test(arguments: [(4096, 0), (39062, 0), (16, 0), (5000, 1), (3000, 2), (1, 0)])
    func ranksMatchTheSortedSample(count: Int, kind: Int) {
        let values = Self.sample(count: count, kind: kind, seed: UInt64(count * 7 + kind))
        let sorted = values.sorted()
        let middle = count / 2, reach = min(count / 2, 2 * Int(Double(count).squareRoot()) + 16)
        let cases = [(max(middle - reach, 0), middle, min(middle + reach, count - 1)),
                     (0, 0, 0), (count - 1, count - 1, count - 1), (0, count / 3, count - 1)]
        for ranks in cases {
            var scratch = values
            let got = scratch.withUnsafeMutableBufferPointer {
                magnitudeSampleRanks($0.baseAddress!, count: count, ranks: ranks)
            }
            #expect(got.0 == sorted[ranks.0] && got.1 == sorted[ranks.1] && got.2 == sorted[ranks.2],
                    "count \(count) kind \(kind) ranks \(ranks)")
        }
    }
}
