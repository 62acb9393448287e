
async def receiver(packet_log):

    # Print the payload data
    print(packet_log["payload"])
    # Will print out: {'dns': 'example.com'}
