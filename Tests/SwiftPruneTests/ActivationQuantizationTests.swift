import Testing
@testable import SwiftPrune

/// The int8 product's activation quantizer: the portable `SIMD16` block code
/// (what runs off x86-64) against the AVX2 one (bit for bit) and both against
/// the float64 formula of `quantized_matmul`'s documentation.
struct ActivationQuantizationTests {
    /// A depth × batch row-major x: Gaussian-like values, a post-ReLU column
    /// (zeros and positives), a constant column, an all-zero column, and
    /// values on exact half steps of their column's scale.
    static func activations(depth: Int, batch: Int, seed: UInt64) -> [Float] {
        var state = seed
        func next() -> Double {  // SplitMix64 → [0, 1)
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
        }
        var x = [Float](repeating: 0, count: depth * batch)
        for k in 0 ..< depth {
            for b in 0 ..< batch {
                let u = next(), v = next()
                var value = Float((u * 2 - 1) * (1 + 3 * v))
                switch b % 7 {
                case 1: value = max(0, value)                  // post-ReLU
                case 2: value = 0.25                           // constant
                case 3: value = 0                              // all zero
                case 4: value = Float(Int(u * 255) - 127) / 2  // halves: ties of rint
                default: break
                }
                x[k * batch + b] = value
            }
        }
        return x
    }

    /// Everything a quantization produced: packed records, tail, scales, zero points, column sums.
    struct Result: Equatable {
        var packed: [UInt8], tail: [Int32], scales: [Float], zeroPoints: [Int32], sums: [Int64]
    }

    static func quantize(_ x: [Float], depth: Int, batch: Int, portable: Bool) throws -> Result {
        let q = try x.withUnsafeBufferPointer {
            try ActivationQuantization(x: $0.baseAddress!, depth: depth, batch: batch, portable: portable)
        }
        defer { q.deallocate() }
        let packedCount = q.columnBlocks * 64 * max(q.quads, 1)
        let tailCount = max(1, (depth - q.quads * 4) * q.paddedBatch)
        return Result(
            packed: Array(UnsafeBufferPointer(start: q.packed.assumingMemoryBound(to: UInt8.self), count: packedCount)),
            tail: Array(UnsafeBufferPointer(start: q.tail, count: tailCount)),
            scales: Array(UnsafeBufferPointer(start: q.scales, count: q.paddedBatch)),
            zeroPoints: Array(UnsafeBufferPointer(start: q.zeroPoints, count: q.paddedBatch)),
            sums: Array(UnsafeBufferPointer(start: q.columnSums, count: q.paddedBatch)))
    }

    /// The code of x[k, b] in a result (full or partial block layout; batch ≥ 8).
    static func code(_ r: Result, k: Int, b: Int, quads: Int, paddedBatch: Int) -> Int {
        if k < quads * 4 {
            let block = b / 16, c = b % 16
            return Int(r.packed[block * quads * 64 + (k / 4) * 64 + c * 4 + k % 4])
        }
        return Int(r.tail[(k - quads * 4) * paddedBatch + b])
    }

    static let shapes: [(depth: Int, batch: Int)] = [
        (1, 16), (3, 16), (4, 16), (7, 32), (64, 40), (257, 64), (1000, 48),
        (4 * 65_536 + 4 * 3 + 3, 16),  // past the portable code's 65 536-record flush of its sums
    ]

    @Test(arguments: shapes)
    func portableBlocksAreBitIdenticalToTheAVX2Ones(shape: (depth: Int, batch: Int)) throws {
        let x = Self.activations(depth: shape.depth, batch: shape.batch, seed: UInt64(shape.depth * 131 + shape.batch))
        let portable = try Self.quantize(x, depth: shape.depth, batch: shape.batch, portable: true)
        let avx2 = try Self.quantize(x, depth: shape.depth, batch: shape.batch, portable: false)
        #expect(portable.scales.map(\.bitPattern) == avx2.scales.map(\.bitPattern))
        #expect(portable.zeroPoints == avx2.zeroPoints)
        #expect(portable.sums == avx2.sums)
        #expect(portable.tail == avx2.tail)
        #expect(portable.packed == avx2.packed)
    }

    /// s = (max(0, max x) − min(0, min x)) / 127 (1 when 0), z = clip(rint(−min / s), 0, 127),
    /// q = clip(rint(x / s) + z, 0, 127), in float64: the float32 kernels agree up to the
    /// rounding of s (codes off by at most 1, and rarely).
    @Test(arguments: [true, false], [(64, 40), (257, 64)])
    func blocksFollowTheFloat64Formula(portable: Bool, shape: (Int, Int)) throws {
        let (depth, batch) = shape
        let x = Self.activations(depth: depth, batch: batch, seed: 7)
        let r = try Self.quantize(x, depth: depth, batch: batch, portable: portable)
        let quads = depth / 4, paddedBatch = (batch + 15) / 16 * 16
        var differing = 0
        for b in 0 ..< batch {
            var low = 0.0, high = 0.0
            for k in 0 ..< depth { low = min(low, Double(x[k * batch + b])); high = max(high, Double(x[k * batch + b])) }
            var s = (high - low) / 127
            if s == 0 { s = 1 }
            let z = min(max((-low / s).rounded(.toNearestOrEven), 0), 127)
            #expect(abs(Double(r.scales[b]) - s) <= s * 1e-6, "column \(b)")
            #expect(Double(r.zeroPoints[b]) == z, "column \(b)")
            var sum = 0
            for k in 0 ..< depth {
                let expected = Int(min(max((Double(x[k * batch + b]) / s).rounded(.toNearestOrEven) + z, 0), 127))
                let got = Self.code(r, k: k, b: b, quads: quads, paddedBatch: paddedBatch)
                sum += got
                #expect(abs(got - expected) <= 1, "x[\(k), \(b)]")
                if got != expected { differing += 1 }
            }
            #expect(Int64(sum) == r.sums[b], "column \(b)")
        }
        #expect(differing * 1000 <= depth * batch, "\(differing) codes differ from the float64 formula")
    }

    /// NaN/Inf and an overflowing range give the same error on both paths.
    @Test(arguments: [true, false])
    func badActivationsGiveTheSameErrors(portable: Bool) {
        var x = Self.activations(depth: 8, batch: 16, seed: 3)
        x[5 * 16 + 9] = .nan
        #expect(throws: SwiftPruneError.value("x contains NaN or Inf")) {
            _ = try Self.quantize(x, depth: 8, batch: 16, portable: portable)
        }
        x[5 * 16 + 9] = 3e38
        x[6 * 16 + 9] = -3e38
        #expect(throws: SwiftPruneError.value("x column 9 spans too wide a range to quantize (overflow)")) {
            _ = try Self.quantize(x, depth: 8, batch: 16, portable: portable)
        }
    }
}
