#ifndef AIBOX_CUDEV_SHIM_H
#define AIBOX_CUDEV_SHIM_H
#include <libudev.h>
#endif
