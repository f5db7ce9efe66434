// SwiftPM needs one source file per C target; the functions are static inline
// in include/swiftprune_prefetch.h.
#include "swiftprune_prefetch.h"
