// Placeholder: implemented in the next commits.
#include "push/rtsp.h"
