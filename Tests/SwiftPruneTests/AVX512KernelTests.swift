import Synchronization
import Testing
@testable import SwiftPrune
import SwiftPruneAVX512
import SwiftPruneAVX512VNNI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The AVX-512 kernels against their portable twins (bit-identical: the same
// operations in the same order, only wider vectors) and against a Double
// reference. The comparisons run only where the CPU has AVX-512.


/// `body` run once with the AVX-512 kernels and once with the portable ones.
private func bothPaths<R>(_ body: () throws -> R) rethrows -> (avx512: R, portable: R) {
    let fast = try body()
    CPUFeatures.portableOnly.store(true, ordering: .relaxed)
    defer { CPUFeatures.portableOnly.store(false, ordering: .relaxed) }
    return (fast, try body())
}

private let shapes = [(1, 8, 1), (7, 16, 9), (17, 64, 64), (33, 128, 100), (5, 40, 17), (64, 256, 130), (3, 4, 8)]

@Suite(.serialized) struct AVX512KernelTests {
    @Test func detectionFollowsProcCpuinfo() throws {
        let disabled = getenv("SWIFTPRUNE_DISABLE_AVX512").map { String(cString: $0) }
        #if arch(x86_64) && os(Linux)
        let flags = try #require(CPUFeatures.cpuinfoFlags())
        #expect(flags.contains("sse2"))  // the line was found and split
        let listed = CPUFeatures.avx512Flags.allSatisfy { flags.contains($0) }
        let off = disabled.map { !$0.isEmpty && $0 != "0" } ?? false
        #expect(CPUFeatures.hasAVX512 == (listed && !off && CPUFeatures.cpuidHasAVX512()))
        #expect(CPUFeatures.cpuidHasAVX512() == listed)  // not under an emulator
        #else
        #expect(!CPUFeatures.hasAVX512)
        #endif
    }

    @Test func flagsLineParsing() {
        let text = Array("processor\t: 0\nflags\t\t: fpu avx2 avx512f\tavx512bw\nbugs\t: x\n".utf8)
        #expect(CPUFeatures.flagsLine(text, complete: false) == ["fpu", "avx2", "avx512f", "avx512bw"])
        let cut = Array("processor\t: 0\nflags\t\t: fpu avx2 avx5".utf8)
        #expect(CPUFeatures.flagsLine(cut, complete: false) == nil)  // read more first
        #expect(CPUFeatures.flagsLine(cut, complete: true) == ["fpu", "avx2", "avx5"])
        #expect(CPUFeatures.flagsLine(Array("model\t: 1\n".utf8), complete: true) == nil)
    }

    @Test(.enabled(if: CPUFeatures.hasAVX512, "needs AVX-512"), arguments: shapes) func csrPathsAgree(shape: (Int, Int, Int)) throws {
        let (rows, columns, batch) = shape
        var w = pseudoRandomFloats(rows * columns, seed: 11)
        for i in w.indices where i % 4 != 1 && i % 7 != 0 { w[i] = 0 }
        let x = pseudoRandomFloats(columns * batch, seed: 12)
        let matrix = try Tensor(shape: [rows, columns], scalars: w).withView { try CSRMatrix(dense: $0) }
        let y = try bothPaths { try Tensor(shape: [columns, batch], scalars: x).withView { try matrix.matmul($0) }.scalars }
        #expect(y.avx512 == y.portable)
        let expected = referenceMatmul(w, rows: rows, columns: columns, x, batch: batch)
        #expect(zip(y.avx512, expected).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) })
    }

    @Test(.enabled(if: CPUFeatures.hasAVX512, "needs AVX-512"), arguments: shapes) func nmPathsAgree(shape: (Int, Int, Int)) throws {
        let (rows, columns, batch) = shape
        let w = pseudoRandomFloats(rows * columns, seed: 21)
        let x = pseudoRandomFloats(columns * batch, seed: 22)
        for (n, m) in [(2, 4), (3, 8), (1, 4)] where columns % m == 0 {
            let matrix = try Tensor(shape: [rows, columns], scalars: w).withView { try NMSparseMatrix(dense: $0, n: n, m: m) }
            let y = try bothPaths { try Tensor(shape: [columns, batch], scalars: x).withView { try matrix.matmul($0) }.scalars }
            #expect(y.avx512 == y.portable, "\(n):\(m)")
            let dense = try matrix.toDense().scalars
            let expected = referenceMatmul(dense, rows: rows, columns: columns, x, batch: batch)
            #expect(zip(y.avx512, expected).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) })
        }
    }

    @Test(.enabled(if: CPUFeatures.hasAVX512, "needs AVX-512"), arguments: [(1, 4, 1), (5, 67, 3), (9, 130, 7), (4, 64, 16), (13, 200, 40), (6, 300, 100)])
    func int8PathsAgree(shape: (Int, Int, Int)) throws {
        let (rows, columns, batch) = shape
        let values = pseudoRandomFloats(rows * columns, seed: 31).map { Int8(($0 * 127).rounded()) }
        let scale = pseudoRandomFloats(rows, seed: 32).map { abs($0) / 100 + 1e-3 }
        let x = pseudoRandomFloats(columns * batch, seed: 33)
        for zeroPoint in [[Int32](), (0 ..< rows).map { Int32($0 % 5) - 2 }] {
            let y = try bothPaths {
                var y = [Float](repeating: .nan, count: rows * batch)
                try values.withUnsafeBufferPointer { v in
                    try scale.withUnsafeBufferPointer { s in
                        try zeroPoint.withUnsafeBufferPointer { z in
                            try x.withUnsafeBufferPointer { xb in
                                try y.withUnsafeMutableBufferPointer { yb in
                                    try QuantizedMatmul.matmul(values: v, rows: rows, columns: columns, scale: s, zeroPoint: z,
                                                               x: xb, xRows: columns, batch: batch, y: yb)
                                }
                            }
                        }
                    }
                }
                return y
            }
            #expect(y.avx512 == y.portable)
            #expect(!y.avx512.contains { $0.isNaN })
        }
    }

    /// The int8 tile kernels alone (AVX-512, and AVX512-VNNI where present) against
    /// the AVX2 one, on random 7-bit activations and full-range int8 weights.
    @Test(.enabled(if: CPUFeatures.hasAVX512, "needs AVX-512")) func int8TileKernelsMatchPortable() {
        let quads = 37, columns = quads * 4
        var state: UInt64 = 0x1234_5678
        func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
        let weights = (0 ..< 4 * columns).map { _ in Int8(truncatingIfNeeded: next()) }  // -128 ... 127
        let packed = UnsafeMutableRawPointer.allocate(byteCount: quads * 64, alignment: 64)
        defer { packed.deallocate() }
        for i in 0 ..< quads * 64 { packed.storeBytes(of: UInt8(next() & 127), toByteOffset: i, as: UInt8.self) }
        for (start, end) in [(0, quads), (3, 4), (5, 5), (1, 36)] {
            let initial = (0 ..< 64).map { Int64($0) * 1000 - 7 }
            var portable = initial, wide = initial, vnni = initial
            weights.withUnsafeBufferPointer { w in
                let p = w.baseAddress!
                let rows = (p, p + columns, p + 2 * columns, p + 3 * columns)
                QuantizedMatmul.microKernel(rows.0, rows.1, rows.2, rows.3, packed: packed, quads: start ..< end, into: &portable)
                AVX512Kernels.int8Tile4x16(rows.0, rows.1, rows.2, rows.3, packed: packed, quadStart: start, quadEnd: end,
                                           tile: &wide)
                if CPUFeatures.hasAVX512VNNI {
                    AVX512VNNIKernels.int8Tile4x16(rows.0, rows.1, rows.2, rows.3, packed: packed, quadStart: start,
                                                   quadEnd: end, tile: &vnni)
                }
            }
            #expect(wide == portable, "\(start) ..< \(end)")
            if CPUFeatures.hasAVX512VNNI { #expect(vnni == portable, "VNNI \(start) ..< \(end)") }
            if end > start { #expect(portable != initial) }
        }
    }

    /// The row kernel alone, every width tail (64-, 16-, 8-wide and scalar), both modes.
    @Test(.enabled(if: CPUFeatures.hasAVX512, "needs AVX-512")) func csrRowKernelMatchesPortable() throws {
        let depth = 40, stride = 144
        let x = pseudoRandomFloats(depth * stride, seed: 41)
        let values = pseudoRandomFloats(depth, seed: 42)
        let indices: [Int32] = (0 ..< Int32(depth)).filter { $0 % 3 != 1 }
        for width in [1, 7, 8, 9, 16, 23, 64, 65, 80, 88, 130, 144] {
            for accumulate in [false, true] {
                for limit: Int32 in [Int32(depth), 20] {
                    let start = pseudoRandomFloats(width, seed: UInt64(width))
                    var fast = start, slow = start
                    var cursor = [1]
                    let ends = [Int64(indices.count)]
                    values.withUnsafeBufferPointer { v in
                        indices.withUnsafeBufferPointer { idx in
                            x.withUnsafeBufferPointer { xb in
                                AVX512Kernels.csrRows(rowCount: 1, values: v.baseAddress!, indices: idx.baseAddress!,
                                                      cursors: &cursor, rowEnds: ends, limit: limit, x: xb.baseAddress!,
                                                      stride: stride, columnBase: 0, width: width, y: &fast, yStride: width,
                                                      accumulate: accumulate)
                                let end = indices.firstIndex { $0 >= limit } ?? indices.count
                                slow.withUnsafeMutableBufferPointer { yb in
                                    sparseRowTimesDense(values: v.baseAddress! + 1, columns: ExplicitColumns(indices: idx.baseAddress! + 1),
                                                        count: end - 1, x: xb.baseAddress!, stride: stride, width: width,
                                                        y: yb.baseAddress!, accumulate: accumulate)
                                }
                                #expect(cursor[0] == end)
                            }
                        }
                    }
                    #expect(fast == slow, "width \(width), accumulate \(accumulate), limit \(limit)")
                }
            }
        }
    }
}
