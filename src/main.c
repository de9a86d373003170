#include <stdio.h>
int main(void){puts("llm-proxy " LP_VERSION);return 0;}
