/// One worker's record of the entries inside the sampled magnitude writer's
/// bracket: each entry's magnitude key and the address of its mask byte, in
/// flat order. The scan writes straight into the free room (``reserve(_:)``
/// first), so no record is copied on its way in.
final class BracketRecords: @unchecked Sendable {
    private(set) var keys: UnsafeMutablePointer<UInt64>
    private(set) var places: UnsafeMutablePointer<UnsafeMutablePointer<Bool>>
    /// Records written so far; the scan adds what it wrote after ``reserve(_:)``.
    var count = 0
    private(set) var capacity: Int

    /// Room for `capacity` records.
    /// - Throws: `.outOfMemory` if it cannot be allocated.
    init(capacity: Int) throws {
        self.capacity = max(capacity, 1)
        keys = try FallibleAllocation.allocate(UInt64.self, count: self.capacity, "the magnitude bracket")
        do {
            places = try FallibleAllocation.allocate(UnsafeMutablePointer<Bool>.self, count: self.capacity,
                                                     "the magnitude bracket")
        } catch {
            FallibleAllocation.free(keys)
            throw error
        }
    }

    deinit {
        FallibleAllocation.free(keys)
        FallibleAllocation.free(places)
    }

    /// Makes room for `extra` more records after ``count``, growing (by at
    /// least doubling) if needed; false if the system refused the memory.
    func reserve(_ extra: Int) -> Bool {
        guard count + extra > capacity else { return true }
        let grown = max(2 * capacity, count + extra)
        guard let newKeys = try? FallibleAllocation.allocate(UInt64.self, count: grown, "the magnitude bracket") else {
            return false
        }
        guard let newPlaces = try? FallibleAllocation.allocate(UnsafeMutablePointer<Bool>.self, count: grown,
                                                               "the magnitude bracket") else {
            FallibleAllocation.free(newKeys)
            return false
        }
        newKeys.update(from: keys, count: count)
        newPlaces.update(from: places, count: count)
        FallibleAllocation.free(keys)
        FallibleAllocation.free(places)
        keys = newKeys
        places = newPlaces
        capacity = grown
        return true
    }

    /// The recorded keys.
    var keyBuffer: UnsafeBufferPointer<UInt64> { UnsafeBufferPointer(start: keys, count: count) }
}
