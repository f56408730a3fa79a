// Placeholder: implemented in the next commits.
#include "push/rtp.h"
