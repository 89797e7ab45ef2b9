/* compare.h: `descent compare` (see compare.c). */
#ifndef DS_COMPARE_H
#define DS_COMPARE_H

/* argv: the arguments after "compare". Returns the exit code. */
int ds_cmd_compare(int argc, char **argv);

#endif
