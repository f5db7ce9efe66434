/// `a · b` for 2-D tensors (`m × k` times `k × n`) on the blocked GEMM.
/// - Throws: ``SwiftPruneError`` unless both are 2-D with matching inner dimensions.
public func matmul<T: GEMMScalar>(_ a: Tensor<T>, _ b: Tensor<T>) throws -> Tensor<T> {
    guard a.rank == 2, b.rank == 2 else {
        throw SwiftPruneError.value("matmul needs 2-D tensors, got shapes \(a.shape) and \(b.shape)")
    }
    let m = a.shape[0], k = a.shape[1], n = b.shape[1]
    guard b.shape[0] == k else {
        throw SwiftPruneError.value("matmul: shapes \(a.shape) and \(b.shape) do not align (\(k) != \(b.shape[0]))")
    }
    return try Tensor<T>.filling(shape: [m, n]) { c in
        try a.withView { a in
            try b.withView { b in
                try gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1,
                         a: a.buffer.baseAddress, lda: max(1, k), b: b.buffer.baseAddress, ldb: max(1, n),
                         beta: 0, c: c.baseAddress, ldc: max(1, n))
            }
        }
    }
}
