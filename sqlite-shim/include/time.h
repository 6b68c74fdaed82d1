/* Freestanding time.h: types only (SQLITE_OMIT_LOCALTIME, time comes from the VFS). */
#ifndef VPR_TIME_H
#define VPR_TIME_H
typedef long time_t;
struct tm {
  int tm_sec, tm_min, tm_hour, tm_mday, tm_mon, tm_year, tm_wday, tm_yday, tm_isdst;
};
#endif
