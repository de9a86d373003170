#include <stdio.h>
int main(void){puts("llm-mock");return 0;}
