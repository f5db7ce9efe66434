// Dense linear algebra for calibration-aware pruning. Written here so that
// SparseGPT does not wait on the shared GEMM; the integrator can route
// `calibrationGramMatrix` to the blocked SGEMM in Kernels/ later.

/// `XᵀX` of the row-major `samples × features` matrix `x`, as a full
/// symmetric row-major `features × features` Double matrix.
///
/// Products are formed in Float with FMA on 4 × 16 register tiles (the
/// reference SparseGPT computes its Hessian in float32); every 256 samples
/// the Float partial sums are added into the Double result, so rounding does
/// not grow with the sample count. Work is split over rows of the result.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func calibrationGramMatrix<S: BinaryFloatingPoint>(
    _ x: UnsafeBufferPointer<S>, samples: Int, features: Int
) throws -> [Double] {
    guard samples >= 0 && features >= 0 else { throw SwiftPruneError.value("negative matrix size") }
    let (count, overflow) = samples.multipliedReportingOverflow(by: features)
    guard !overflow && count == x.count else {
        throw SwiftPruneError.value("x has \(x.count) elements, expected \(samples) x \(features)")
    }
    let n = features
    guard !n.multipliedReportingOverflow(by: n).overflow else {
        throw SwiftPruneError(.outOfMemory, "a \(n) x \(n) Gram matrix is too large")
    }
    var gram = try [Double](fallibleRepeating: 0, count: n * n)
    guard n > 0 && samples > 0 else { return gram }
    let source = x.baseAddress!
    let panelWidth = 16
    let panels = (n + panelWidth - 1) / panelWidth
    let padded = panels * panelWidth
    let chunk = 256
    // Panel p holds x[s][p*16 ..< p*16+16] for every s, zero padded: panel-major.
    let packed = try FallibleAllocation.allocate(Float.self, count: padded * samples)
    defer { FallibleAllocation.free(packed) }
    let packWorkers = Threading.workerCount(for: count, minimumPerWorker: 1 << 16)
    parallelFor(workers: packWorkers) { worker in
        for s in partitionRange(samples, parts: packWorkers, index: worker) {
            let row = source + s * n
            for p in 0 ..< panels {
                let out = packed + (p * samples + s) * panelWidth
                let c0 = p * panelWidth
                let width = min(panelWidth, n - c0)
                for c in 0 ..< width { out[c] = Float(row[c0 + c]) }
                for c in width ..< panelWidth { out[c] = 0 }
            }
        }
    }
    let tiles = padded / 4  // row tiles of 4
    let workers = Threading.workerCount(for: tiles * panels * samples * 8, minimumPerWorker: 1 << 20)
    gram.withUnsafeMutableBufferPointer { gramBuffer in
        let g = gramBuffer.baseAddress!
        parallelFor(workers: workers) { worker in
            var s0 = 0
            while s0 < samples {
                let s1 = min(samples, s0 + chunk)
                // Interleaved tiles balance the triangle between workers.
                var tile = worker
                while tile < tiles {
                    let i0 = tile * 4
                    if i0 < n {
                        let aPanel = packed + (i0 / panelWidth) * samples * panelWidth + (i0 % panelWidth)
                        for p in (i0 / panelWidth) ..< panels {
                            let bPanel = packed + p * samples * panelWidth
                            var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
                            var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
                            for s in s0 ..< s1 {
                                let b = UnsafeRawPointer(bPanel + s * panelWidth)
                                let b0 = b.loadUnaligned(as: SIMD8<Float>.self)
                                let b1 = b.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                                let a = aPanel + s * panelWidth
                                let a0 = SIMD8<Float>(repeating: a[0]), a1 = SIMD8<Float>(repeating: a[1])
                                let a2 = SIMD8<Float>(repeating: a[2]), a3 = SIMD8<Float>(repeating: a[3])
                                c00.addProduct(a0, b0); c01.addProduct(a0, b1)
                                c10.addProduct(a1, b0); c11.addProduct(a1, b1)
                                c20.addProduct(a2, b0); c21.addProduct(a2, b1)
                                c30.addProduct(a3, b0); c31.addProduct(a3, b1)
                            }
                            let j0 = p * panelWidth
                            let width = min(panelWidth, n - j0)
                            @inline(__always) func store(_ r: Int, _ lo: SIMD8<Float>, _ hi: SIMD8<Float>) {
                                guard i0 + r < n else { return }
                                let out = g + (i0 + r) * n + j0
                                for c in 0 ..< min(8, width) { out[c] += Double(lo[c]) }
                                if width > 8 { for c in 8 ..< width { out[c] += Double(hi[c - 8]) } }
                            }
                            store(0, c00, c01); store(1, c10, c11); store(2, c20, c21); store(3, c30, c31)
                        }
                    }
                    tile += workers
                }
                s0 = s1
            }
        }
        // Mirror the upper triangle (and the lower parts of diagonal tiles are already full).
        for i in 0 ..< n {
            for j in 0 ..< ((i / 4 * 4) / panelWidth) * panelWidth { g[i * n + j] = g[j * n + i] }
        }
    }
    return gram
}
