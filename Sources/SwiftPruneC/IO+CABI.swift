import CSwiftPrune
import SwiftPrune

/// An open safetensors file plus the C strings and shapes handed out by
/// `sp_safetensors_tensor` / `sp_safetensors_metadata`, which live as long as it.
final class SafetensorsFileHandle {
    let file: SafetensorsFile
    let names: [UnsafeMutableBufferPointer<CChar>]
    let shapes: [UnsafeMutableBufferPointer<Int64>]
    let metadata: [(UnsafeMutableBufferPointer<CChar>, UnsafeMutableBufferPointer<CChar>)]

    init(_ file: SafetensorsFile) {
        self.file = file
        names = file.entries.map { cString($0.name) }
        shapes = file.entries.map { entry in
            let buffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(1, entry.shape.count))
            for (i, d) in entry.shape.enumerated() { buffer[i] = Int64(d) }
            return buffer
        }
        metadata = file.header.metadata.map { (cString($0.0), cString($0.1)) }
    }

    deinit {
        names.forEach { $0.deallocate() }
        shapes.forEach { $0.deallocate() }
        metadata.forEach { $0.0.deallocate(); $0.1.deallocate() }
    }
}

/// A NUL-terminated copy of `text` (which may itself contain NULs; the
/// length is passed separately).
private func cString(_ text: String) -> UnsafeMutableBufferPointer<CChar> {
    let utf8 = Array(text.utf8)
    let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: utf8.count + 1)
    for (i, byte) in utf8.enumerated() { buffer[i] = CChar(bitPattern: byte) }
    buffer[utf8.count] = 0
    return buffer
}

/// A Swift string from `length` bytes of UTF-8 at `pointer`.
private func utf8String(_ pointer: UnsafePointer<CChar>?, _ length: Int64, _ what: String) throws -> String {
    let bytes = try inputBuffer(pointer, length, what)
    guard let text = bytes.withMemoryRebound(to: UInt8.self, { String(validating: $0, as: UTF8.self) }) else {
        throw SwiftPruneError.value("\(what) is not valid UTF-8")
    }
    return text
}

private func fileHandle(_ file: OpaquePointer?) throws -> SafetensorsFileHandle {
    guard let file else { throw SwiftPruneError.value("file is NULL") }
    return Unmanaged<SafetensorsFileHandle>.fromOpaque(UnsafeRawPointer(file)).takeUnretainedValue()
}

private func writerHandle(_ writer: OpaquePointer?) throws -> SafetensorsWriter {
    guard let writer else { throw SwiftPruneError.value("writer is NULL") }
    return Unmanaged<SafetensorsWriter>.fromOpaque(UnsafeRawPointer(writer)).takeUnretainedValue()
}

private func index(_ index: Int64, count: Int, _ what: String) throws -> Int {
    guard index >= 0 && index < Int64(count) else {
        throw SwiftPruneError.value("\(what) index \(index) is out of range (\(count) entries)")
    }
    return Int(index)
}

@_cdecl("sp_safetensors_open")
public func spSafetensorsOpen(_ path: UnsafePointer<CChar>?, _ fileOut: UnsafeMutablePointer<OpaquePointer?>?) -> sp_status {
    withStatus {
        guard let path, let fileOut else { throw SwiftPruneError.value("path or file_out is NULL") }
        let handle = SafetensorsFileHandle(try SafetensorsFile(path: String(cString: path)))
        fileOut.pointee = OpaquePointer(Unmanaged.passRetained(handle).toOpaque())
    }
}

@_cdecl("sp_safetensors_open_ex")
public func spSafetensorsOpenEx(
    _ path: UnsafePointer<CChar>?, _ flags: Int32, _ fileOut: UnsafeMutablePointer<OpaquePointer?>?
) -> sp_status {
    withStatus {
        guard let path, let fileOut else { throw SwiftPruneError.value("path or file_out is NULL") }
        guard flags & ~Int32(SP_SAFETENSORS_MMAP) == 0 else { throw SwiftPruneError.value("unknown flags \(flags)") }
        let file = try SafetensorsFile(path: String(cString: path), mapped: flags & Int32(SP_SAFETENSORS_MMAP) != 0)
        fileOut.pointee = OpaquePointer(Unmanaged.passRetained(SafetensorsFileHandle(file)).toOpaque())
    }
}

@_cdecl("sp_safetensors_read")
public func spSafetensorsRead(_ file: OpaquePointer?, _ i: Int64, _ out: UnsafeMutableRawPointer?, _ nbytes: Int64) -> sp_status {
    withStatus {
        let handle = try fileHandle(file)
        let k = try index(i, count: handle.file.entries.count, "tensor")
        let bytes = try outputBuffer(out?.assumingMemoryBound(to: UInt8.self), nbytes, "out")
        try handle.file.read(k, into: UnsafeMutableRawBufferPointer(bytes))
    }
}

@_cdecl("sp_safetensors_close")
public func spSafetensorsClose(_ file: OpaquePointer?) {
    guard let file else { return }
    Unmanaged<SafetensorsFileHandle>.fromOpaque(UnsafeRawPointer(file)).release()
}

@_cdecl("sp_safetensors_tensor_count")
public func spSafetensorsTensorCount(_ file: OpaquePointer?) -> Int64 {
    guard let handle = try? fileHandle(file) else { return 0 }
    return Int64(handle.file.entries.count)
}

@_cdecl("sp_safetensors_tensor")
public func spSafetensorsTensor(
    _ file: OpaquePointer?, _ i: Int64, _ recordOut: UnsafeMutablePointer<sp_tensor_record>?
) -> sp_status {
    withStatus {
        let handle = try fileHandle(file)
        guard let recordOut else { throw SwiftPruneError.value("record_out is NULL") }
        let k = try index(i, count: handle.file.entries.count, "tensor")
        let entry = handle.file.entries[k]
        // Read mode: no pointer, the bytes come from sp_safetensors_read.
        let data = handle.file.isMapped ? try handle.file.tensorBytes(k).baseAddress : nil
        recordOut.pointee = sp_tensor_record(
            name: UnsafePointer(handle.names[k].baseAddress),
            name_length: Int64(entry.name.utf8.count),
            dtype: UnsafeRawPointer(entry.dtype.staticName.utf8Start).assumingMemoryBound(to: CChar.self),
            ndim: Int64(entry.shape.count),
            shape: UnsafePointer(handle.shapes[k].baseAddress),
            data: data,
            nbytes: Int64(entry.dataRange.count))
    }
}

@_cdecl("sp_safetensors_metadata_count")
public func spSafetensorsMetadataCount(_ file: OpaquePointer?) -> Int64 {
    guard let handle = try? fileHandle(file) else { return 0 }
    return Int64(handle.metadata.count)
}

@_cdecl("sp_safetensors_metadata")
public func spSafetensorsMetadata(
    _ file: OpaquePointer?, _ i: Int64,
    _ keyOut: UnsafeMutablePointer<UnsafePointer<CChar>?>?, _ keyLengthOut: UnsafeMutablePointer<Int64>?,
    _ valueOut: UnsafeMutablePointer<UnsafePointer<CChar>?>?, _ valueLengthOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        let handle = try fileHandle(file)
        guard let keyOut, let keyLengthOut, let valueOut, let valueLengthOut else {
            throw SwiftPruneError.value("an output pointer is NULL")
        }
        let k = try index(i, count: handle.metadata.count, "metadata")
        let (key, value) = handle.file.header.metadata[k]
        keyOut.pointee = UnsafePointer(handle.metadata[k].0.baseAddress)
        keyLengthOut.pointee = Int64(key.utf8.count)
        valueOut.pointee = UnsafePointer(handle.metadata[k].1.baseAddress)
        valueLengthOut.pointee = Int64(value.utf8.count)
    }
}

@_cdecl("sp_safetensors_release")
public func spSafetensorsRelease(_ file: OpaquePointer?, _ i: Int64) -> sp_status {
    withStatus {
        let handle = try fileHandle(file)
        try handle.file.release(index(i, count: handle.file.entries.count, "tensor"))
    }
}

@_cdecl("sp_safetensors_writer_create")
public func spSafetensorsWriterCreate(
    _ path: UnsafePointer<CChar>?, _ headerReserve: Int64, _ writerOut: UnsafeMutablePointer<OpaquePointer?>?
) -> sp_status {
    withStatus {
        guard let path, let writerOut else { throw SwiftPruneError.value("path or writer_out is NULL") }
        guard headerReserve >= 0 && headerReserve <= Int64(SafetensorsHeader.maximumHeaderLength) else {
            throw SwiftPruneError.value("header_reserve must be in [0, \(SafetensorsHeader.maximumHeaderLength)], got \(headerReserve)")
        }
        let writer = try SafetensorsWriter(path: String(cString: path), headerReserve: Int(headerReserve))
        writerOut.pointee = OpaquePointer(Unmanaged.passRetained(writer).toOpaque())
    }
}

@_cdecl("sp_safetensors_writer_add")
public func spSafetensorsWriterAdd(_ writer: OpaquePointer?, _ tensor: UnsafePointer<sp_tensor_record>?) -> sp_status {
    withStatus {
        let writer = try writerHandle(writer)
        guard let record = tensor?.pointee else { throw SwiftPruneError.value("tensor is NULL") }
        let name = try utf8String(record.name, record.name_length, "tensor name")
        guard !name.isEmpty else { throw SwiftPruneError.value("tensor name is empty") }
        guard let dtypeName = record.dtype else { throw SwiftPruneError.value("tensor \"\(name)\": dtype is NULL") }
        let dtype = try SafetensorsDType.named(String(cString: dtypeName))
        let dims = try inputBuffer(record.shape, record.ndim, "shape")
        let bytes = try inputBuffer(record.data?.assumingMemoryBound(to: UInt8.self), record.nbytes, "data")
        try writer.add(name: name, dtype: dtype, shape: dims.map { Int($0) }, bytes: UnsafeRawBufferPointer(bytes))
    }
}

@_cdecl("sp_safetensors_writer_set_metadata")
public func spSafetensorsWriterSetMetadata(
    _ writer: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLength: Int64,
    _ value: UnsafePointer<CChar>?, _ valueLength: Int64
) -> sp_status {
    withStatus {
        let writer = try writerHandle(writer)
        try writer.setMetadata(utf8String(key, keyLength, "metadata key"), utf8String(value, valueLength, "metadata value"))
    }
}

@_cdecl("sp_safetensors_writer_commit")
public func spSafetensorsWriterCommit(_ writer: OpaquePointer?) -> sp_status {
    withStatus { try writerHandle(writer).commit() }
}

@_cdecl("sp_safetensors_writer_free")
public func spSafetensorsWriterFree(_ writer: OpaquePointer?) {
    guard let writer else { return }
    Unmanaged<SafetensorsWriter>.fromOpaque(UnsafeRawPointer(writer)).release()
}

func checkIOSignatures() {
    var open = sp_safetensors_open; implements(&open, spSafetensorsOpen)
    var close = sp_safetensors_close; implements(&close, spSafetensorsClose)
    var openEx = sp_safetensors_open_ex; implements(&openEx, spSafetensorsOpenEx)
    var read = sp_safetensors_read; implements(&read, spSafetensorsRead)
    var count = sp_safetensors_tensor_count; implements(&count, spSafetensorsTensorCount)
    var tensor = sp_safetensors_tensor; implements(&tensor, spSafetensorsTensor)
    var metadataCount = sp_safetensors_metadata_count; implements(&metadataCount, spSafetensorsMetadataCount)
    var metadata = sp_safetensors_metadata; implements(&metadata, spSafetensorsMetadata)
    var release = sp_safetensors_release; implements(&release, spSafetensorsRelease)
    var create = sp_safetensors_writer_create; implements(&create, spSafetensorsWriterCreate)
    var add = sp_safetensors_writer_add; implements(&add, spSafetensorsWriterAdd)
    var setMetadata = sp_safetensors_writer_set_metadata; implements(&setMetadata, spSafetensorsWriterSetMetadata)
    var commit = sp_safetensors_writer_commit; implements(&commit, spSafetensorsWriterCommit)
    var free = sp_safetensors_writer_free; implements(&free, spSafetensorsWriterFree)
}
