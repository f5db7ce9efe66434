import Testing
@testable import SwiftPrune

@Suite struct PruningMaskTests {
    @Test func globalMagnitudePrunesAcrossTensorsWithOneThreshold() throws {
        let a = try Tensor<Float>(shape: [2, 2], scalars: [0.1, 5, -0.2, 3])
        let b = Tensor<Float>([4, -0.05, 1])
        let masks = try globalMagnitudeMasks([a, b], sparsity: 3.0 / 7.0)
        #expect(masks[0].scalars == [false, true, false, true])
        #expect(masks[1].scalars == [true, false, true])
        #expect(masks[1].shape == [3])
    }

    @Test func globalMagnitudeRejectsBadSparsityAndNaN() throws {
        let a = Tensor<Double>([1, .nan])
        #expect(throws: SwiftPruneError.self) { try globalMagnitudeMasks([a], sparsity: 0.5) }
        #expect(throws: SwiftPruneError.self) { try globalMagnitudeMasks([Tensor<Double>([1, 2])], sparsity: 1.5) }
    }

    @Test(arguments: [Float(1), -1])
    func nmKeepsTheLargestOfEachGroup(sign: Float) throws {
        let w = try Tensor<Float>(shape: [2, 4], scalars: [0.1, -0.4, 0.3, 0.2, 5, 1, -2, 0].map { $0 * sign })
        #expect(try nmMask(w).scalars == [false, true, true, false, true, false, true, false])
        // Along axis 0 with m = 2: each column keeps its larger entry.
        #expect(try nmMask(w, n: 1, m: 2, axis: 0).scalars == [false, false, false, true, true, true, true, false])
    }

    @Test func nmGeneralMatchesTheFastPathAndLargeM() throws {
        var generator = Xoshiro256StarStar(seed: 1)
        let values = (0 ..< 4096).map { _ in Float(Int(generator.uniform(below: 17))) - 8 }  // many ties
        let w = try Tensor<Float>(shape: [64, 64], scalars: values)
        let fast = try nmMask(w, n: 2, m: 4, axis: -1)
        // Same groups through the general kernel: a [64, 16, 4] view along axis 2 has inner 1, so
        // go through a transposed copy instead (axis 0 of the transpose = axis 1 here).
        var transposed = [Float](repeating: 0, count: 4096)
        for i in 0 ..< 64 { for j in 0 ..< 64 { transposed[j * 64 + i] = values[i * 64 + j] } }
        let general = try nmMask(Tensor(shape: [64, 64], scalars: transposed), n: 2, m: 4, axis: 0)
        for i in 0 ..< 64 { for j in 0 ..< 64 { #expect(fast.scalars[i * 64 + j] == general.scalars[j * 64 + i]) } }
        let big = try nmMask(w, n: 20, m: 64, axis: 1)
        for row in 0 ..< 64 { #expect(big.scalars[row * 64 ..< row * 64 + 64].filter { $0 }.count == 20) }
    }

    @Test func nmRejectsBadArguments() throws {
        let w = try Tensor<Double>(shape: [2, 6], repeating: 1)
        #expect(throws: SwiftPruneError.self) { try nmMask(w, n: 4, m: 4) }
        #expect(throws: SwiftPruneError.self) { try nmMask(w, n: 0, m: 4) }
        #expect(throws: SwiftPruneError.self) { try nmMask(w, n: 2, m: 4) }  // 6 % 4
        #expect(throws: SwiftPruneError.self) { try nmMask(w, n: 1, m: 2, axis: 2) }
        #expect(throws: SwiftPruneError.self) { try nmMask(Tensor<Double>([1, .infinity]), n: 1, m: 2) }
    }

    @Test(arguments: [(SliceNorm.l2, [false, true, true, false]), (.l1, [true, false, true, false]),
                      (.infinity, [false, true, true, false])])
    func structuredPrunesLowestNormSlices(norm: SliceNorm, expected: [Bool]) throws {
        let w = try Tensor<Double>(shape: [4, 2], scalars: [3, 4, 0, 5, 4, 3, 1, 1])
        let mask = try structuredMask(w, amount: 0.5, axis: 0, norm: norm)
        #expect((0 ..< 4).map { mask.scalars[2 * $0] } == expected)
        #expect((0 ..< 4).map { mask.scalars[2 * $0 + 1] } == expected)
    }

    @Test func sliceNormsOnBothStrategies() throws {
        // inner = 100 (row reduction) and inner = 1 (plane accumulation).
        let w = try Tensor<Float>(shape: [3, 100], scalars: (0 ..< 300).map { Float($0 % 7) - 3 })
        let rows = try w.withView { try sliceNorms($0, axis: 0, norm: .l1) }
        let expectedRows = (0 ..< 3).map { r in (0 ..< 100).reduce(0.0) { $0 + Double(abs(($1 + 100 * r) % 7 - 3)) } }
        #expect(rows == expectedRows)
        let columns = try w.withView { try sliceNorms($0, axis: 1, norm: .infinity) }
        #expect(columns.count == 100 && columns.allSatisfy { $0 >= 1 && $0 <= 3 })
        #expect(throws: SwiftPruneError.self) { try SliceNorm(order: 3) }
    }

    @Test func blockScoresPartialEdgeBlocksByTheirOwnMean() throws {
        let w = try Tensor<Float>(shape: [1, 3], scalars: [1, 1, 1.5])
        #expect(try blockMask(w, sparsity: 0.5, blockRows: 1, blockColumns: 2).scalars == [false, false, true])
        let square = try Tensor<Float>(shape: [2, 2], scalars: [1, 2, 3, 4])
        #expect(try blockMask(square, sparsity: 0.5, blockRows: 2, blockColumns: 1).scalars == [false, true, false, true])
        #expect(throws: SwiftPruneError.self) { try blockMask(square, sparsity: 0.5, blockRows: 0, blockColumns: 1) }
        #expect(throws: SwiftPruneError.self) { try blockMask(Tensor<Float>([1, 2]), sparsity: 0.5) }
    }

    @Test func randomPrunesExactlyKAndIsReproducible() throws {
        for sparsity in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let mask = try randomMask(shape: [37, 3], sparsity: sparsity, seed: 42)
            #expect(mask.scalars.filter { !$0 }.count == Int((sparsity * 111).rounded(.toNearestOrEven)))
            #expect(try randomMask(shape: [37, 3], sparsity: sparsity, seed: 42) == mask)
        }
        #expect(try randomMask(shape: [100], sparsity: 0.5, seed: 1) != randomMask(shape: [100], sparsity: 0.5, seed: 2))
    }

    @Test func xoshiroReferenceSequence() {
        // SplitMix64 seeding then xoshiro256**: a change of algorithm changes every mask.
        var a = Xoshiro256StarStar(seed: 0), b = Xoshiro256StarStar(seed: 0)
        let first = (0 ..< 4).map { _ in a.next() }
        #expect(first == (0 ..< 4).map { _ in b.next() })
        #expect(Set(first).count == 4)
        var c = Xoshiro256StarStar(seed: 7)
        for bound in [1, 2, 3, 10, 1 << 40] as [UInt64] { #expect(c.uniform(below: bound) < bound) }
    }
}

@Suite struct CalibrationTests {
    @Test func inverseCholeskyUpperFactorsTheInverse() throws {
        let n = 37
        var generator = Xoshiro256StarStar(seed: 3)
        let x = (0 ..< 80 * n).map { _ in Double(generator.uniform(below: 1000)) / 500 - 1 }
        let h = try x.withUnsafeBufferPointer { try calibrationGramMatrix($0, samples: 80, features: n) }
        // Gram matrix against the definition (Float products, so a loose tolerance).
        for i in [0, 5, 36] {
            for j in [0, 17, 36] {
                let exact = (0 ..< 80).reduce(0.0) { $0 + x[$1 * n + i] * x[$1 * n + j] }
                #expect(abs(h[i * n + j] - exact) < 1e-4 * max(1, abs(exact)))
            }
        }
        let u = try calibrationInverseCholeskyUpper(h, n: n)
        // Uᵀ U H = I.
        var maxError = 0.0
        for i in 0 ..< n {
            for j in 0 ..< n {
                var sum = 0.0
                for k in 0 ..< n {
                    var utu = 0.0
                    for t in 0 ... min(i, k) { utu += u[t * n + i] * u[t * n + k] }
                    sum += utu * h[k * n + j]
                }
                maxError = max(maxError, abs(sum - (i == j ? 1 : 0)))
            }
        }
        #expect(maxError < 1e-8)
        for i in 0 ..< n { #expect(u[i * n + i] > 0); for j in 0 ..< i { #expect(u[i * n + j] == 0) } }
    }

    @Test func choleskyRejectsSingularMatrices() {
        #expect(throws: SwiftPruneError.self) { try calibrationInverseCholeskyUpper([1, 1, 1, 1], n: 2) }
    }

    @Test func wandaScoresByInputNorms() throws {
        let w = try Tensor<Float>(shape: [1, 4], scalars: [1, 2, 3, 4])
        let x = try Tensor<Float>(shape: [1, 4], scalars: [100, 1, 1, 0.01])
        #expect(try wandaMask(w, activations: x, sparsity: 0.5).scalars == [true, false, true, false])
        #expect(throws: SwiftPruneError.self) {
            try wandaMask(w, activations: Tensor<Float>(shape: [1, 3], repeating: 1), sparsity: 0.5)
        }
    }

    @Test func sparseGPTPrunesExactlyAndNMHoldsThePattern() throws {
        var generator = Xoshiro256StarStar(seed: 9)
        func random() -> Double { Double(generator.uniform(below: 1 << 20)) / Double(1 << 19) - 1 }
        let w = try Tensor<Double>(shape: [6, 16], scalars: (0 ..< 96).map { _ in random() })
        let x = try Tensor<Double>(shape: [40, 16], scalars: (0 ..< 640).map { _ in random() })
        let pruned = try sparseGPT(w, activations: x, pattern: .unstructured(sparsity: 0.5), blockSize: 8)
        #expect(pruned.scalars.filter { $0 == 0 }.count == 48)
        let nm = try sparseGPT(w, activations: x, pattern: .nm(n: 2, m: 4), blockSize: 8)
        for group in 0 ..< 24 { #expect(nm.scalars[group * 4 ..< group * 4 + 4].filter { $0 != 0 }.count == 2) }
        #expect(throws: SwiftPruneError.self) {
            try sparseGPT(w, activations: x, pattern: .nm(n: 2, m: 4), blockSize: 6)
        }
        #expect(throws: SwiftPruneError.self) {
            try sparseGPT(w, activations: x, pattern: .unstructured(sparsity: 0.5), damp: -1)
        }
    }
}

@Suite struct MagnitudeWriterTests {
    /// The one-pass (sampled) and two-pass writers against the three-pass writer.
    @Test(arguments: [0.0001, 0.3, 0.5, 0.8, 0.9999])
    func writersAgreeWithTheThreePassWriter(sparsity: Double) throws {
        var generator = Xoshiro256StarStar(seed: 11)
        // Coarse values: many exact ties everywhere, including at the threshold.
        let a = (0 ..< 70_000).map { _ in Float(Int(generator.uniform(below: 4001))) / 1000 - 2 }
        let b = (0 ..< 3).map { _ in Float(Int(generator.uniform(below: 4001))) / 1000 - 2 }
        let c = (0 ..< 50_000).map { _ in Float(Int(generator.uniform(below: 4001))) / 1000 - 2 }
        let total = a.count + b.count + c.count
        let k = Int((sparsity * Double(total)).rounded(.toNearestOrEven))
        func run(_ writer: (SegmentedBuffer<Float>, Int, [UnsafeMutableBufferPointer<Bool>]) throws -> Void) throws -> [Bool] {
            var out = [Bool](repeating: false, count: total)
            try a.withUnsafeBufferPointer { pa in
                try b.withUnsafeBufferPointer { pb in
                    try c.withUnsafeBufferPointer { pc in
                        try out.withUnsafeMutableBufferPointer { o in
                            let masks = [UnsafeMutableBufferPointer(rebasing: o[0 ..< a.count]),
                                         UnsafeMutableBufferPointer(rebasing: o[a.count ..< a.count + b.count]),
                                         UnsafeMutableBufferPointer(rebasing: o[(a.count + b.count)...])]
                            try writer(SegmentedBuffer([pa, pb, pc]), k, masks)
                        }
                    }
                }
            }
            return out
        }
        let reference = try run { try writeMagnitudeMasks($0, prune: $1, into: $2) }
        #expect(reference.filter { !$0 }.count == k)
        #expect(try run { try writeMagnitudeMasksTwoPass($0, prune: $1, into: $2) } == reference)
        #expect(try run { try writeMagnitudeMasksSampled($0, prune: $1, into: $2, minimumCount: 0) } == reference)
        for writer in MagnitudeMaskWriter.allCases {  // what the chooser can pick, each forced
            #expect(try run { try writer.write($0, prune: $1, into: $2) } == reference)
        }
        #expect(try run { try writeMagnitudeMasksFastest($0, prune: $1, into: $2) } == reference)
    }
}

/// The one place that picks a magnitude-mask writer (measured by benchmarks/mask_writers.py):
/// three-pass below 2^15 entries, sampled from there; one tensor or several alike.
@Test func magnitudeMaskWriterChoice() {
    guard MagnitudeMaskWriter.forced == nil else { return }  // SWIFTPRUNE_MASK_WRITER set: the choice is forced
    #expect(MagnitudeMaskWriter.chosen(count: 1 << 10, segments: 1) == .threePass)
    #expect(MagnitudeMaskWriter.chosen(count: (1 << 15) - 1, segments: 1) == .threePass)
    #expect(MagnitudeMaskWriter.chosen(count: (1 << 15) - 1, segments: 20) == .threePass)
    #expect(MagnitudeMaskWriter.chosen(count: 1 << 15, segments: 1) == .sampled)
    #expect(MagnitudeMaskWriter.chosen(count: 1 << 20, segments: 20) == .sampled)
    #expect(MagnitudeMaskWriter.chosen(count: 1 << 26, segments: 20) == .sampled)
}
