#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one allocator for memory whose size follows the input.
///
/// Swift's own allocations (`Array`, `UnsafeMutablePointer.allocate`) end
/// the process when the system refuses memory — inside Python, that kills
/// the interpreter. Scratch sized by the caller's data therefore comes from
/// here: `posix_memalign`, and a refusal (or a size that overflows) throws
/// ``SwiftPruneError`` `.outOfMemory`, which the C ABI reports as
/// `SP_ERR_MEMORY` and Python raises as `MemoryError`.
public enum FallibleAllocation {
    /// `bytes` bytes (at least 1) aligned to `alignment` (a power of two, at
    /// least the pointer size); free them with ``free(_:)``.
    /// - Throws: ``SwiftPruneError`` `.outOfMemory` if the system refuses.
    @inline(__always)
    public static func allocate(bytes: Int, alignment: Int = 64, _ what: @autoclosure () -> String = "scratch") throws
        -> UnsafeMutableRawPointer {
        guard bytes >= 0 else { throw SwiftPruneError(.outOfMemory, "\(what()): negative size \(bytes)") }
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, max(alignment, MemoryLayout<Int>.size), max(bytes, 1))
        guard status == 0, let pointer else {
            throw SwiftPruneError(.outOfMemory, "cannot allocate \(bytes) bytes for \(what())")
        }
        return pointer
    }

    /// `count` elements of `T` (uninitialized), or `.outOfMemory`.
    @inline(__always)
    public static func allocate<T>(_: T.Type, count: Int, _ what: @autoclosure () -> String = "scratch") throws
        -> UnsafeMutablePointer<T> {
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !overflow else {
            throw SwiftPruneError(.outOfMemory, "cannot allocate \(count) elements for \(what()): the size overflows")
        }
        return try allocate(bytes: bytes, alignment: max(64, MemoryLayout<T>.alignment), what()).bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// Checks that `count` elements of `T` can be allocated right now, for
    /// storage that must be a Swift `Array` (see `Array.init(fallibleRepeating:count:_:)`).
    @inline(__always)
    public static func probe<T>(_: T.Type, count: Int, _ what: @autoclosure () -> String = "scratch") throws {
        free(try allocate(T.self, count: count, what()))
    }

    /// Frees memory from ``allocate(bytes:alignment:_:)``.
    @inline(__always)
    public static func free(_ pointer: UnsafeMutableRawPointer?) { cFree(pointer) }
}

@inline(__always)
private func cFree(_ pointer: UnsafeMutableRawPointer?) {
    #if canImport(Glibc)
    Glibc.free(pointer)
    #else
    Darwin.free(pointer)
    #endif
}

/// A growable array of plain values on the fallible allocator: the scratch
/// kernels fill when they cannot know the final size in advance. Appending
/// past the capacity reallocates; a refused allocation sets ``failed`` and
/// drops the element, so a worker thread (which cannot throw) finishes and
/// the caller throws with ``check(_:)``.
public final class ScratchArray<Element: BitwiseCopyable>: @unchecked Sendable {
    public private(set) var base: UnsafeMutablePointer<Element>
    public private(set) var count = 0
    public private(set) var capacity: Int
    /// An allocation was refused; the contents are incomplete.
    public private(set) var failed = false

    /// An empty array with room for `capacity` elements.
    /// - Throws: `.outOfMemory` if that room cannot be allocated.
    public init(capacity: Int, _ what: @autoclosure () -> String = "scratch") throws {
        self.capacity = max(capacity, 1)
        base = try FallibleAllocation.allocate(Element.self, count: self.capacity, what())
    }

    /// `count` copies of `value`.
    public convenience init(repeating value: Element, count: Int, _ what: @autoclosure () -> String = "scratch") throws {
        try self.init(capacity: count, what())
        base.initialize(repeating: value, count: count)
        self.count = count
    }

    deinit { FallibleAllocation.free(base) }

    @inline(__always)
    public subscript(index: Int) -> Element {
        get { base[index] }
        set { base[index] = newValue }
    }

    /// Appends `value`; on a refused reallocation sets ``failed`` instead.
    @inline(__always)
    public func append(_ value: Element) {
        if count == capacity && !grow() { return }
        base[count] = value
        count += 1
    }

    /// Appends all of `values` (one capacity check and one copy); on a refused
    /// reallocation sets ``failed`` instead and appends nothing.
    public func append(contentsOf values: UnsafeBufferPointer<Element>) {
        guard let source = values.baseAddress, values.count > 0 else { return }
        while count + values.count > capacity { if !grow() { return } }
        (base + count).update(from: source, count: values.count)
        count += values.count
    }

    /// Empties the array, keeping its room.
    public func removeAll() { count = 0 }

    public var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: base, count: count) }

    /// Throws `.outOfMemory` if an append was refused.
    public func check(_ what: @autoclosure () -> String = "scratch") throws {
        if failed { throw SwiftPruneError(.outOfMemory, "cannot allocate memory for \(what())") }
    }

    private func grow() -> Bool {
        guard !failed else { return false }
        let (newCapacity, overflow) = capacity.multipliedReportingOverflow(by: 2)
        let (bytes, overflow2) = newCapacity.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow, !overflow2, let grown = realloc(base, bytes) else { failed = true; return false }
        base = grown.bindMemory(to: Element.self, capacity: newCapacity)
        capacity = newCapacity
        return true
    }
}

extension Array where Element: BitwiseCopyable {
    /// `count` copies of `value` after checking, through the fallible
    /// allocator, that the memory is there.
    ///
    /// For arrays that must stay `Array` (returned to Swift callers, passed
    /// to APIs taking arrays): the probe turns an impossible request into
    /// `.outOfMemory` instead of a trap. A concurrent allocation can still
    /// take the memory between probe and use, so the kernels' own scratch
    /// uses ``ScratchArray`` instead.
    public init(fallibleRepeating value: Element, count: Int, _ what: @autoclosure () -> String = "scratch") throws {
        try FallibleAllocation.probe(Element.self, count: count, what())
        self.init(repeating: value, count: count)
    }
}
