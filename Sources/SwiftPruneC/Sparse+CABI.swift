import CSwiftPrune
import SwiftPrune

/// `rows · cols` as an element count, checking signs and overflow.
private func matrixCount(_ rows: Int64, _ cols: Int64, _ name: String) throws -> Int64 {
    guard rows >= 0, cols >= 0 else { throw SwiftPruneError.value("\(name): negative shape (\(rows), \(cols))") }
    let (count, overflow) = rows.multipliedReportingOverflow(by: cols)
    guard !overflow else { throw SwiftPruneError(.outOfMemory, "\(name): shape (\(rows), \(cols)) is too large") }
    return count
}

/// The element count of an N:M matrix's compressed arrays, after checking the layout.
private func nmCount(_ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64) throws -> Int64 {
    _ = try matrixCount(rows, cols, "w")
    try NMSparseMatrix.checkLayout(rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m))
    return rows * (cols / m) * n
}

@_cdecl("sp_csr_count_f32")
public func spCSRCountF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ cols: Int64, _ indptrOut: UnsafeMutablePointer<Int64>?,
    _ nnzOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        let dense = try inputBuffer(w, matrixCount(rows, cols, "w"), "w")
        let offsets = try outputBuffer(indptrOut, rows &+ 1, "indptr_out")
        guard let nnzOut else { throw SwiftPruneError.value("nnz_out is NULL") }
        nnzOut.pointee = Int64(try CSRMatrix.countNonzeros(dense: dense, rows: Int(rows), columns: Int(cols), rowOffsets: offsets))
    }
}

@_cdecl("sp_csr_fill_f32")
public func spCSRFillF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ cols: Int64, _ indptr: UnsafePointer<Int64>?, _ nnz: Int64,
    _ indicesOut: UnsafeMutablePointer<Int32>?, _ dataOut: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let dense = try inputBuffer(w, matrixCount(rows, cols, "w"), "w")
        try CSRMatrix.fill(dense: dense, rows: Int(rows), columns: Int(cols), rowOffsets: inputBuffer(indptr, rows &+ 1, "indptr"),
                           columnIndices: outputBuffer(indicesOut, nnz, "indices_out"), values: outputBuffer(dataOut, nnz, "data_out"))
    }
}

/// The one body of `sp_csr_matmul_f32` and `sp_csr_matmul_u16_f32`: the C
/// arguments checked and wrapped, then `product`, the Swift entry for the index width.
@inline(__always)
private func csrMatmul<Index>(
    _ rows: Int64, _ cols: Int64, _ indptr: UnsafePointer<Int64>?, _ indices: UnsafePointer<Index>?,
    _ data: UnsafePointer<Float>?, _ nnz: Int64, _ x: UnsafePointer<Float>?, _ xRows: Int64, _ batch: Int64,
    _ y: UnsafeMutablePointer<Float>?,
    product: (Int, Int, UnsafeBufferPointer<Int64>, UnsafeBufferPointer<Index>, UnsafeBufferPointer<Float>,
              UnsafeBufferPointer<Float>, Int, Int, UnsafeMutableBufferPointer<Float>) throws -> Void
) -> sp_status {
    withStatus {
        _ = try matrixCount(rows, cols, "W")
        try product(Int(rows), Int(cols), inputBuffer(indptr, rows &+ 1, "indptr"), inputBuffer(indices, nnz, "indices"),
                    inputBuffer(data, nnz, "data"), inputBuffer(x, matrixCount(xRows, batch, "x"), "x"), Int(xRows),
                    Int(batch), outputBuffer(y, matrixCount(rows, batch, "y"), "y"))
    }
}

@_cdecl("sp_csr_matmul_f32")
public func spCSRMatmulF32(
    _ rows: Int64, _ cols: Int64, _ indptr: UnsafePointer<Int64>?, _ indices: UnsafePointer<Int32>?,
    _ data: UnsafePointer<Float>?, _ nnz: Int64, _ x: UnsafePointer<Float>?, _ xRows: Int64, _ batch: Int64,
    _ y: UnsafeMutablePointer<Float>?
) -> sp_status {
    csrMatmul(rows, cols, indptr, indices, data, nnz, x, xRows, batch, y) {
        try CSRMatrix.matmul(rows: $0, columns: $1, rowOffsets: $2, columnIndices: $3, values: $4, x: $5, xRows: $6, n: $7, y: $8)
    }
}

@_cdecl("sp_csr_matmul_u16_f32")
public func spCSRMatmulU16F32(
    _ rows: Int64, _ cols: Int64, _ indptr: UnsafePointer<Int64>?, _ indices: UnsafePointer<UInt16>?,
    _ data: UnsafePointer<Float>?, _ nnz: Int64, _ x: UnsafePointer<Float>?, _ xRows: Int64, _ batch: Int64,
    _ y: UnsafeMutablePointer<Float>?
) -> sp_status {
    csrMatmul(rows, cols, indptr, indices, data, nnz, x, xRows, batch, y) {
        try CSRMatrix.matmul(rows: $0, columns: $1, rowOffsets: $2, columnIndices16: $3, values: $4, x: $5, xRows: $6, n: $7, y: $8)
    }
}

@_cdecl("sp_csr_to_dense_f32")
public func spCSRToDenseF32(
    _ rows: Int64, _ cols: Int64, _ indptr: UnsafePointer<Int64>?, _ indices: UnsafePointer<Int32>?,
    _ data: UnsafePointer<Float>?, _ nnz: Int64, _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let count = try matrixCount(rows, cols, "W")
        try CSRMatrix.toDense(rows: Int(rows), columns: Int(cols), rowOffsets: inputBuffer(indptr, rows &+ 1, "indptr"),
                              columnIndices: inputBuffer(indices, nnz, "indices"), values: inputBuffer(data, nnz, "data"),
                              into: outputBuffer(out, count, "out"))
    }
}

@_cdecl("sp_nm_compress_f32")
public func spNMCompressF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64,
    _ valuesOut: UnsafeMutablePointer<Float>?, _ indicesOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        let count = try nmCount(rows, cols, n, m)
        try NMSparseMatrix.compress(dense: inputBuffer(w, rows * cols, "w"), rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m),
                                    values: outputBuffer(valuesOut, count, "values_out"),
                                    groupIndices: outputBuffer(indicesOut, count, "indices_out"))
    }
}

@_cdecl("sp_nm_value_count")
public func spNMValueCount(
    _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64, _ countOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        let count = try nmCount(rows, cols, n, m)
        guard let countOut else { throw SwiftPruneError.value("count_out is NULL") }
        countOut.pointee = count
    }
}

@_cdecl("sp_nm_matmul_f32")
public func spNMMatmulF32(
    _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64, _ values: UnsafePointer<Float>?, _ indices: UnsafePointer<UInt8>?,
    _ x: UnsafePointer<Float>?, _ xRows: Int64, _ batch: Int64, _ y: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let count = try nmCount(rows, cols, n, m)
        try NMSparseMatrix.matmul(rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m),
                                  values: inputBuffer(values, count, "values"), groupIndices: inputBuffer(indices, count, "indices"),
                                  x: inputBuffer(x, matrixCount(xRows, batch, "x"), "x"), xRows: Int(xRows), batch: Int(batch),
                                  y: outputBuffer(y, matrixCount(rows, batch, "y"), "y"))
    }
}

@_cdecl("sp_nm_packed_bytes")
public func spNMPackedBytes(
    _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64, _ bytesOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        _ = try nmCount(rows, cols, n, m)
        guard let bytesOut else { throw SwiftPruneError.value("bytes_out is NULL") }
        bytesOut.pointee = Int64(try NMPackedLayout.byteCount(rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m)))
    }
}

@_cdecl("sp_nm_pack")
public func spNMPack(
    _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64, _ values: UnsafePointer<Float>?, _ indices: UnsafePointer<UInt8>?,
    _ packedOut: UnsafeMutableRawPointer?, _ packedBytes: Int64
) -> sp_status {
    withStatus {
        let count = try nmCount(rows, cols, n, m)
        try NMPackedLayout.pack(rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m),
                                values: inputBuffer(values, count, "values"), groupIndices: inputBuffer(indices, count, "indices"),
                                into: UnsafeMutableRawBufferPointer(outputBuffer(packedOut?.assumingMemoryBound(to: UInt8.self),
                                                                                 packedBytes, "packed_out")))
    }
}

@_cdecl("sp_nm_packed_matmul_f32")
public func spNMPackedMatmulF32(
    _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64, _ packed: UnsafeRawPointer?, _ packedBytes: Int64,
    _ x: UnsafePointer<Float>?, _ xRows: Int64, _ batch: Int64, _ y: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        _ = try nmCount(rows, cols, n, m)
        try NMPackedLayout.matmul(rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m),
                                  packed: UnsafeRawBufferPointer(inputBuffer(packed?.assumingMemoryBound(to: UInt8.self),
                                                                             packedBytes, "packed")),
                                  x: inputBuffer(x, matrixCount(xRows, batch, "x"), "x"), xRows: Int(xRows), batch: Int(batch),
                                  y: outputBuffer(y, matrixCount(rows, batch, "y"), "y"))
    }
}

@_cdecl("sp_nm_to_dense_f32")
public func spNMToDenseF32(
    _ rows: Int64, _ cols: Int64, _ n: Int64, _ m: Int64, _ values: UnsafePointer<Float>?, _ indices: UnsafePointer<UInt8>?,
    _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let count = try nmCount(rows, cols, n, m)
        try NMSparseMatrix.toDense(rows: Int(rows), columns: Int(cols), n: Int(n), m: Int(m),
                                   values: inputBuffer(values, count, "values"), groupIndices: inputBuffer(indices, count, "indices"),
                                   into: outputBuffer(out, rows * cols, "out"))
    }
}

@_cdecl("sp_quantized_matmul_i8")
public func spQuantizedMatmulI8(
    _ values: UnsafePointer<Int8>?, _ rows: Int64, _ cols: Int64, _ scale: UnsafePointer<Float>?,
    _ zeroPoint: UnsafePointer<Int32>?, _ x: UnsafePointer<Float>?, _ xRows: Int64, _ batch: Int64,
    _ y: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let zeroPoints = zeroPoint == nil ? UnsafeBufferPointer(start: nil, count: 0) : try inputBuffer(zeroPoint, rows, "zero_point")
        try QuantizedMatmul.matmul(values: inputBuffer(values, matrixCount(rows, cols, "values"), "values"),
                                   rows: Int(rows), columns: Int(cols), scale: inputBuffer(scale, rows, "scale"),
                                   zeroPoint: zeroPoints, x: inputBuffer(x, matrixCount(xRows, batch, "x"), "x"),
                                   xRows: Int(xRows), batch: Int(batch), y: outputBuffer(y, matrixCount(rows, batch, "y"), "y"))
    }
}

@_cdecl("sp_nm_compact")
public func spNMCompact(
    _ values: UnsafeRawPointer?, _ elementBytes: Int64, _ keep: UnsafePointer<UInt8>?, _ runs: Int64, _ n: Int64,
    _ m: Int64, _ storedOut: UnsafeMutableRawPointer?, _ positionsOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        guard runs >= 0, (1 ... 256).contains(m), (1 ..< m).contains(n), [1, 2, 4, 8].contains(elementBytes) else {
            throw SwiftPruneError.value("an N:M layout needs runs >= 0, 1 <= n < m <= 256 and elements of 1, 2, 4 or 8 "
                                        + "bytes, got runs = \(runs), n = \(n), m = \(m), element_bytes = \(elementBytes)")
        }
        let total = try matrixCount(runs, m, "values"), kept = runs * n
        let valueBytes = try matrixCount(total, elementBytes, "values"), storedBytes = kept * elementBytes
        guard valueBytes == 0 || values != nil, storedBytes == 0 || storedOut != nil else {
            throw SwiftPruneError.value("values and stored_out must not be NULL")
        }
        try NMRunCompaction.compact(
            UnsafeRawBufferPointer(start: values, count: Int(valueBytes)), elementBytes: Int(elementBytes),
            keep: inputBuffer(keep, total, "keep"), n: Int(n), m: Int(m),
            stored: UnsafeMutableRawBufferPointer(start: storedOut, count: Int(storedBytes)),
            positions: outputBuffer(positionsOut, kept, "positions_out"))
    }
}

@_cdecl("sp_mask_compact")
public func spMaskCompact(
    _ values: UnsafeRawPointer?, _ elementBytes: Int64, _ keep: UnsafePointer<UInt8>?, _ count: Int64, _ kept: Int64,
    _ keptOut: UnsafeMutableRawPointer?
) -> sp_status {
    withStatus {
        guard [1, 2, 4, 8].contains(elementBytes), count >= 0, (0 ... count).contains(kept) else {
            throw SwiftPruneError.value("need elements of 1, 2, 4 or 8 bytes and 0 <= kept <= count, got element_bytes = "
                                        + "\(elementBytes), count = \(count), kept = \(kept)")
        }
        let valueBytes = try matrixCount(count, elementBytes, "values")
        guard valueBytes == 0 || values != nil, kept == 0 || keptOut != nil else {
            throw SwiftPruneError.value("values and kept_out must not be NULL")
        }
        try MaskCompaction.compact(
            UnsafeRawBufferPointer(start: values, count: Int(valueBytes)), elementBytes: Int(elementBytes),
            keep: inputBuffer(keep, count, "keep"),
            into: UnsafeMutableRawBufferPointer(start: keptOut, count: Int(kept * elementBytes)))
    }
}

@_cdecl("sp_apply_mask_f32")
public func spApplyMaskF32(
    _ w: UnsafePointer<Float>?, _ keep: UnsafePointer<UInt8>?, _ count: Int64, _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        try MaskApplication.apply(inputBuffer(w, count, "w"), keep: inputBuffer(keep, count, "keep"),
                                  into: outputBuffer(out, count, "out"))
    }
}

func checkSparseSignatures() {
    var csrCount = sp_csr_count_f32; implements(&csrCount, spCSRCountF32)
    var csrFill = sp_csr_fill_f32; implements(&csrFill, spCSRFillF32)
    var csrMatmul = sp_csr_matmul_f32; implements(&csrMatmul, spCSRMatmulF32)
    var csrMatmul16 = sp_csr_matmul_u16_f32; implements(&csrMatmul16, spCSRMatmulU16F32)
    var csrToDense = sp_csr_to_dense_f32; implements(&csrToDense, spCSRToDenseF32)
    var nmCompress = sp_nm_compress_f32; implements(&nmCompress, spNMCompressF32)
    var nmValueCount = sp_nm_value_count; implements(&nmValueCount, spNMValueCount)
    var nmMatmul = sp_nm_matmul_f32; implements(&nmMatmul, spNMMatmulF32)
    var nmToDense = sp_nm_to_dense_f32; implements(&nmToDense, spNMToDenseF32)
    var nmPackedBytes = sp_nm_packed_bytes; implements(&nmPackedBytes, spNMPackedBytes)
    var nmPack = sp_nm_pack; implements(&nmPack, spNMPack)
    var nmPackedMatmul = sp_nm_packed_matmul_f32; implements(&nmPackedMatmul, spNMPackedMatmulF32)
    var nmCompact = sp_nm_compact; implements(&nmCompact, spNMCompact)
    var maskCompact = sp_mask_compact; implements(&maskCompact, spMaskCompact)
    var applyMask = sp_apply_mask_f32; implements(&applyMask, spApplyMaskF32)
    var quantized = sp_quantized_matmul_i8; implements(&quantized, spQuantizedMatmulI8)
}
