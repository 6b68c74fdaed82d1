/* Freestanding math.h: the constants SQLite uses; no libm function is referenced. */
#ifndef VPR_MATH_H
#define VPR_MATH_H
#define INFINITY (__builtin_inff())
#define NAN (__builtin_nanf(""))
#define HUGE_VAL (__builtin_huge_val())
#define fabs(x) __builtin_fabs((x))
#define isnan(x) __builtin_isnan((x))
#endif
