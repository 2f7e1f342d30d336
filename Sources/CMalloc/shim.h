// glibc's malloc.h, which Swift's Glibc module leaves out: mallinfo2 (what
// the heap holds in use and free) and malloc_trim (give free pages back).
#include <malloc.h>
