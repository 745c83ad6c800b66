#include "CAIBoxOS.h"

#include <string.h>
#include <sys/timex.h>

int aibox_clock_unsynchronized(void) {
    struct timex t;
    memset(&t, 0, sizeof t);  // modes 0: only reads, needs no CAP_SYS_TIME
    int state = adjtimex(&t);
    if (state < 0) return -1;
    return state == TIME_ERROR ? 1 : 0;
}
