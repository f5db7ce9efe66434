#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Writes a safetensors file tensor by tensor, atomically.
///
/// Each ``add(name:dtype:shape:bytes:)`` appends the tensor's bytes to a
/// temporary file next to the destination, after room reserved for the
/// header, so a caller can compress and write a model one tensor at a time
/// without holding it in memory. ``commit()`` writes the compact header in
/// front of the data (padded with spaces only up to the 8-byte alignment of
/// the data section; data spooled behind a larger reserve are moved down in
/// place, so the file holds no slack), flushes the file to disk (`fsync`; the
/// data were already written past the page cache while later tensors were
/// copied, or flushed in the background where that is not possible, see
/// ``DataAppender``), renames it over the destination and flushes the
/// directory: readers see the old file or the complete new one, never a
/// partial file (see ``TemporaryFile``: no named temporary file exists while
/// writing where the file system has `O_TMPFILE`). The new file keeps the
/// mode and, where permitted, the owner of the file it replaces; a
/// destination that is a symbolic link keeps pointing at the new file. If the header outgrew its room, the data are copied once
/// into a second temporary file behind the header. A writer that is not
/// committed (an error, ``discard()`` or deinit) leaves the destination
/// untouched and removes its temporary file.
///
/// The methods may be called from any thread; calls are serialized.
public final class SafetensorsWriter: @unchecked Sendable {
    public let path: String

    private struct State {
        var spool: TemporaryFile?
        /// Writes the data section of `spool`.
        var appender: DataAppender?
        var entries: [SafetensorsEntry] = []
        var names = Set<String>()
        var metadata: [(String, String)] = []
        var dataSize = 0
        var finished = false
    }

    private let state = Mutex(State())
    /// `path` with symbolic links followed: a link keeps pointing at the new file.
    private let destination: String
    /// Where the data section starts in the temporary file: 8 + the reserved header room.
    private let dataBase: Int

    /// Starts a file to be written at `path` (nothing appears there before ``commit()``).
    /// `headerReserve` is the room kept for the header's JSON (rounded up so
    /// that data start at a multiple of 8); a good estimate saves a copy.
    /// - Throws: ``SwiftPruneError`` if the temporary file cannot be created in
    ///   the destination's directory, or the reserve is negative or too large.
    public init(path: String, headerReserve: Int = 4088) throws {
        guard headerReserve >= 0 && headerReserve <= SafetensorsHeader.maximumHeaderLength else {
            throw SwiftPruneError.value("header reserve must be in [0, \(SafetensorsHeader.maximumHeaderLength)], got \(headerReserve)")
        }
        self.path = path
        destination = TemporaryFile.resolvingSymlinks(path)
        dataBase = (8 + headerReserve + 7) / 8 * 8
        let spool = try TemporaryFile.create(besides: destination)
        let appender = DataAppender(fd: spool.descriptor, base: dataBase, what: "temporary file for \(path)")
        state.withLock {
            $0.spool = spool
            $0.appender = appender
        }
    }

    deinit { discard() }

    /// Appends a tensor. `bytes` are its elements in C order, little-endian,
    /// exactly `dtype.size * product(shape)` of them.
    /// - Throws: ``SwiftPruneError`` for an empty, duplicate or reserved name
    ///   (`__metadata__`), a byte count that does not match, a negative
    ///   dimension, a finished writer or a failed write.
    public func add(name: String, dtype: SafetensorsDType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        var expected = dtype.size
        for d in shape {
            guard d >= 0 else { throw SwiftPruneError.value("tensor \"\(name)\": shape \(shape) has a negative dimension") }
            let (product, overflow) = expected.multipliedReportingOverflow(by: d)
            guard !overflow else { throw SwiftPruneError(.outOfMemory, "tensor \"\(name)\": shape \(shape) is too large") }
            expected = product
        }
        guard expected == bytes.count else {
            throw SwiftPruneError.value(
                "tensor \"\(name)\": shape \(shape) of \(dtype.rawValue) needs \(expected) bytes, got \(bytes.count)")
        }
        guard name != "__metadata__" else { throw SwiftPruneError.value("\"__metadata__\" is reserved and cannot name a tensor") }
        try state.withLock { state in
            guard !state.finished else { throw SwiftPruneError.value("the safetensors writer for \(path) is already closed") }
            guard !state.names.contains(name) else { throw SwiftPruneError.value("duplicate tensor name \"\(name)\"") }
            try state.appender!.append(bytes)
            let begin = state.dataSize
            state.dataSize += bytes.count
            state.names.insert(name)
            state.entries.append(SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin ..< state.dataSize))
        }
    }

    /// Sets a `__metadata__` entry (a later value for the same key replaces the earlier one).
    public func setMetadata(_ key: String, _ value: String) throws {
        try state.withLock { state in
            guard !state.finished else { throw SwiftPruneError.value("the safetensors writer for \(path) is already closed") }
            if let index = state.metadata.firstIndex(where: { $0.0 == key }) {
                state.metadata[index].1 = value
            } else {
                state.metadata.append((key, value))
            }
        }
    }

    /// The header for the tensors added so far: 8 bytes of length, then the
    /// JSON padded with spaces to at least `minimumLength` bytes and so that
    /// the data section starts at a multiple of 8.
    static func headerBytes(entries: [SafetensorsEntry], metadata: [(String, String)], minimumLength: Int = 0) -> [UInt8] {
        var json: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func separator() { if !first { json.append(UInt8(ascii: ",")) }; first = false }
        if !metadata.isEmpty {
            separator()
            appendJSONString("__metadata__", to: &json)
            json.append(contentsOf: Array(":{".utf8))
            for (i, (key, value)) in metadata.enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                appendJSONString(key, to: &json)
                json.append(UInt8(ascii: ":"))
                appendJSONString(value, to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        for entry in entries {
            separator()
            appendJSONString(entry.name, to: &json)
            json.append(contentsOf: Array(":{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[".utf8))
            json.append(contentsOf: Array(entry.shape.map(String.init).joined(separator: ",").utf8))
            json.append(contentsOf: Array("],\"data_offsets\":[\(entry.dataRange.lowerBound),\(entry.dataRange.upperBound)]}".utf8))
        }
        json.append(UInt8(ascii: "}"))
        while json.count < minimumLength || (8 + json.count) % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = [UInt8](repeating: 0, count: 8)
        var length = UInt64(json.count)
        for i in 0 ..< 8 { out[i] = UInt8(truncatingIfNeeded: length); length >>= 8 }
        return out + json
    }

    /// Writes the file and renames it into place; the writer is closed afterwards.
    /// - Throws: ``SwiftPruneError`` if the header is too large or any write,
    ///   flush or rename fails; the destination is then left untouched.
    public func commit() throws {
        try state.withLock { state in
            guard !state.finished else { throw SwiftPruneError.value("the safetensors writer for \(path) is already closed") }
            defer { Self.finish(&state) }
            // Under the lock no new background write can start (add holds it); this waits for
            // the last ones, and an error they saw is this commit's.
            try state.appender!.finish()
            let compact = Self.headerBytes(entries: state.entries, metadata: state.metadata)
            guard compact.count - 8 <= SafetensorsHeader.maximumHeaderLength else {
                throw SwiftPruneError.value("safetensors header of \(compact.count - 8) bytes exceeds the limit of \(SafetensorsHeader.maximumHeaderLength)")
            }
            let spool = state.spool!
            let what = "temporary file for \(path)"
            if compact.count <= dataBase {
                if compact.count < dataBase {
                    // Too much room was reserved: move the data down behind the compact
                    // header (in place) instead of padding the header with spaces, so the
                    // file is no bigger than its content plus the 8-byte alignment.
                    try Self.move(spool.descriptor, from: dataBase, to: compact.count, count: state.dataSize, what: what)
                    guard ftruncate(spool.descriptor, off_t(compact.count + state.dataSize)) == 0 else {
                        throw SwiftPruneError.system("cannot truncate \(what)", errno: errno)
                    }
                }
                try compact.withUnsafeBytes { try Self.writeAll(spool.descriptor, $0, at: 0, what: what) }
                state.spool = nil  // publish closes it
                try spool.publish()
            } else {
                let second = try TemporaryFile.create(besides: destination)
                do {
                    try compact.withUnsafeBytes { try Self.writeAll(second.descriptor, $0, at: 0, what: what) }
                    try Self.copy(from: spool.descriptor, at: dataBase, count: state.dataSize, to: second.descriptor,
                                  at: compact.count, what: what)
                } catch {
                    second.discard()
                    throw error
                }
                try second.publish()
            }
        }
    }

    /// Abandons the file: removes the spool, leaves the destination untouched.
    /// Does nothing on a closed writer.
    public func discard() {
        state.withLock { state in Self.finish(&state) }
    }

    private static func finish(_ state: inout State) {
        // No background write may outlive the file descriptor.
        state.appender?.abandon()
        state.appender = nil
        state.spool?.discard()
        state.spool = nil
        state.finished = true
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, what: String) throws {
        guard var pointer = bytes.baseAddress else { return }
        var remaining = bytes.count
        var position = offset
        while remaining > 0 {
            let written = pwrite(fd, pointer, min(remaining, 1 << 30), off_t(position))
            if written < 0 {
                if errno == EINTR { continue }
                throw SwiftPruneError.system("cannot write \(what)", errno: errno)
            }
            pointer += written
            remaining -= written
            position += written
        }
    }

    /// Moves `count` bytes of `fd` from `source` down to `destination` (< `source`),
    /// front to back, so every chunk is read before anything overwrites it.
    static func move(_ fd: Int32, from source: Int, to destination: Int, count: Int, what: String) throws {
        guard destination <= source else { throw SwiftPruneError.value("internal: data can only move towards the start of \(what)") }
        try copy(from: fd, at: source, count: count, to: fd, at: destination, what: what)
    }

    static func copy(from source: Int32, at sourceOffset: Int, count: Int, to destination: Int32, at destinationOffset: Int,
                     what: String) throws {
        let chunk = 1 << 22
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let got = pread(source, buffer.baseAddress, min(chunk, count - done), off_t(sourceOffset + done))
            if got < 0 {
                if errno == EINTR { continue }
                throw SwiftPruneError.system("cannot read back the data for \(what)", errno: errno)
            }
            guard got > 0 else { throw SwiftPruneError.value("the data for \(what) ended early") }
            try writeAll(destination, UnsafeRawBufferPointer(rebasing: buffer[0 ..< got]), at: destinationOffset + done, what: what)
            done += got
        }
    }
}
