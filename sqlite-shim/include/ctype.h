/* Freestanding ctype.h: SQLite needs nothing from it in this configuration. */
