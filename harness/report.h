/* report.h: `descent report` (see report.c). */
#ifndef DS_REPORT_H
#define DS_REPORT_H

#include "../core/ds.h"

/* Draws the figures, then writes DIR/report.html and DIR/report.md. */
ds_status ds_report_dir(const char *dir, struct ds_err *err);
/* argv: the arguments after "report". Returns the exit code. */
int ds_cmd_report(int argc, char **argv);

#endif
