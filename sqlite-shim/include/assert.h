/* Freestanding assert.h for the PAL's SQLite: assertions compile away (NDEBUG build). */
#ifndef VPR_ASSERT_H
#define VPR_ASSERT_H
#define assert(x) ((void)0)
#endif
